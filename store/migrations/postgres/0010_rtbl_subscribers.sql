-- Subscribers to the node's XEP-0060 RTBL service (spec/blocklists.md, RTBL service): who
-- gets each node's notifications, kept across restarts because consumers subscribe once, at
-- their own start-up. `synced_through` is the change-feed position the subscriber is known to
-- have been sent everything up to (a replay after a reconnect retracts what changed after it).
CREATE TABLE rtbl_subscribers (
    node            TEXT NOT NULL,
    jid             TEXT NOT NULL,
    domain          TEXT NOT NULL,
    subscribed_at   BIGINT NOT NULL,
    synced_through  BIGINT NOT NULL,
    PRIMARY KEY (node, jid)
);
CREATE INDEX rtbl_subscribers_by_domain ON rtbl_subscribers (domain);
