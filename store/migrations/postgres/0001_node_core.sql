-- Node core: incidents, blocklist entries and their reasons, allow entries, the change feed,
-- the audit log (transparency log leaves), the outbox, peers and operator tokens.
-- Portable conventions (sqlx Any): TEXT, BIGINT (also for booleans and unix seconds), BYTEA.

CREATE TABLE incidents (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    issuer          TEXT NOT NULL,
    reporter        TEXT NOT NULL,
    origin          TEXT NOT NULL,
    status          TEXT NOT NULL,
    category        TEXT NOT NULL,
    severity        TEXT NOT NULL,
    body            TEXT NOT NULL,
    provenance      TEXT,
    share           BIGINT NOT NULL,
    decision        TEXT NOT NULL,
    decision_reason TEXT,
    received_at     BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    log_index       BIGINT NOT NULL
);
CREATE INDEX incidents_by_status ON incidents (status, seq);
CREATE INDEX incidents_by_category ON incidents (category, seq);
CREATE INDEX incidents_by_reporter ON incidents (reporter, seq);

CREATE TABLE entries (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        TEXT NOT NULL,
    value       TEXT NOT NULL,
    action      TEXT NOT NULL,
    source      TEXT NOT NULL,
    first_seen  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    listings    BIGINT NOT NULL,
    active      BIGINT NOT NULL,
    log_index   BIGINT NOT NULL,
    UNIQUE (kind, value)
);
CREATE INDEX entries_active_expiry ON entries (active, expires_at);

CREATE TABLE entry_reasons (
    entry_id    BIGINT NOT NULL REFERENCES entries (id),
    incident_id TEXT NOT NULL,
    reporter    TEXT NOT NULL,
    weight_milli BIGINT NOT NULL,
    added_at    BIGINT NOT NULL,
    PRIMARY KEY (entry_id, incident_id)
);
CREATE INDEX entry_reasons_by_incident ON entry_reasons (incident_id);

CREATE TABLE allow_entries (
    kind        TEXT NOT NULL,
    value       TEXT NOT NULL,
    note        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    log_index   BIGINT NOT NULL,
    PRIMARY KEY (kind, value)
);

CREATE TABLE list_changes (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        TEXT NOT NULL,
    value       TEXT NOT NULL,
    op          TEXT NOT NULL,
    action      TEXT,
    expires_at  BIGINT,
    at          BIGINT NOT NULL,
    log_index   BIGINT NOT NULL
);

CREATE TABLE audit_log (
    idx         BIGINT PRIMARY KEY,
    leaf        BYTEA NOT NULL,
    leaf_hash   BYTEA NOT NULL,
    at          BIGINT NOT NULL
);

CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    peer            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    reference       TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    state           TEXT NOT NULL,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);

CREATE TABLE peers (
    jid         TEXT PRIMARY KEY,
    domain      TEXT NOT NULL,
    state       TEXT NOT NULL,
    trust       TEXT NOT NULL,
    keys        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE tokens (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    scope       TEXT NOT NULL,
    hash        BYTEA NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE meta (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);
