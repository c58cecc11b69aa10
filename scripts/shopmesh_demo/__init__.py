"""`make demo`: a narrated checkout over REST through the edge, as one trace.

Against a running stack (`make demo` starts it first, as `make up`, when it is
not running) it registers a customer, browses the catalog, orders, pays with
`pm_card_visa`, watches the order become CONFIRMED, reads the notification and
the mail in Mailpit, then shows a declined card cancelling an order with its
stock restored, and an owner cancelling a paid order with its refund. Every
call sends one W3C `traceparent` (one trace id, a fresh span id per call), so the
story is one trace; the demo ends by printing that trace's span tree.

Modules: `endpoints` (where the stack listens, from its settings), `tracecontext`
(the traceparent), `client` (HTTP with that header, every call recorded),
`narration` (the printed steps), `story` (the steps themselves), `trace`
(the span-tree printer), `__main__` (the command line).
"""
