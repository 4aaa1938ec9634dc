-- Delivery runs one queue per peer: each reads its own due rows, so one peer's backlog
-- (a buddy that is down, a stranger that never answers) is never in another peer's way.
CREATE INDEX outbox_peer_due ON outbox (peer, state, next_attempt_at);
