-- The brake's budget covers any sixty minutes, not each clock hour: a peer could otherwise
-- spend one budget just before the hour turns and another just after. Its use is kept per
-- minute; the per-hour table goes.
CREATE TABLE peer_budget_minutes (
    peer    TEXT NOT NULL,
    minute  BIGINT NOT NULL,
    used    BIGINT NOT NULL,
    PRIMARY KEY (peer, minute)
);
DROP TABLE peer_budget;
