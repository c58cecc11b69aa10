"""Domain events on Kafka: one envelope, a transactional outbox, its relay, and
idempotent consumers with dead-lettering (DESIGN §5 and §7).

- `envelope`: the wire format (headers, key) written by producers and relays and
  read by consumers; nothing else encodes or decodes event headers.
- `topics`: the topics declared in kafka/topics.yaml; code names topics only
  through it.
- `outbox`: the store interface a relay reads (PostgreSQL implementation here;
  an insert-only MongoDB store can implement the same interface).
- `relay`: publishes a service's outbox, one relay per service at a time.
- `doorbell`: how a commit wakes this process's relay before its next poll.
- `inbox`, `consumer`: apply each event's effect once, commit offsets after it.
- `dlq`: dead-letter headers, listing and redriving dead-lettered messages.
"""
