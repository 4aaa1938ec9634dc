-- The brake (spec/reputation.md, Brake): how many entries each peer's reports listed or
-- delisted in each hour, and what went over that budget, waiting for the operator.
CREATE TABLE peer_budget (
    peer  TEXT NOT NULL,
    hour  BIGINT NOT NULL,
    used  BIGINT NOT NULL,
    PRIMARY KEY (peer, hour)
);

-- change: `list` (one offender of an incident, with the weight it would have had) or
-- `retract` (a retraction, applied in full on release).
CREATE TABLE held_changes (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    peer         TEXT NOT NULL,
    incident_id  TEXT NOT NULL,
    change       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    value        TEXT NOT NULL,
    weight_milli BIGINT NOT NULL,
    held_at      BIGINT NOT NULL
);
CREATE INDEX held_changes_by_peer ON held_changes (peer, id);
