-- Replicas of one node sharing this database (PostgreSQL; SQLite serves one process): each
-- running replica's last heartbeat, where its memory stands in the log, and whether it holds
-- the node's one XMPP link. Health reports read it; nothing decides from it.
CREATE TABLE replicas (
    name        TEXT PRIMARY KEY,
    log_size    BIGINT NOT NULL,
    holds_link  BIGINT NOT NULL,
    started_at  BIGINT NOT NULL,
    seen_at     BIGINT NOT NULL
);
