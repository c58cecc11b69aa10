"""The crash-anything ledger test: checkout load through the edge, one component SIGKILLed at a
time on a seeded schedule, then an audit of every store against the checkout's invariants.

- `client`: the edge client, which retries a failed request the way a real client does
  (same request id) and counts every request and its outcome;
- `load`: the checkout mix (paid, declined, cancelled before and after payment, duplicated);
- `faults`: the seeded schedule and the injector (SIGKILL, then restart after a few seconds);
- `audit`: reads every store and localstripe and Mailpit, prints the ledger table, lists
  the offending ids of every invariant that does not hold;
- `run`: one run on a given stack (the short test and `make chaos` share it);
- `__main__`: `make chaos`, on a stack of its own.
"""
