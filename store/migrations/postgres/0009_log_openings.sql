-- The openings of sealed audit leaves (spec/transparency-log.md, Sealed leaves): the salt and
-- the open record's leaf bytes. Erasing a row is how a sealed leaf is forgotten for good;
-- the leaf itself, in audit_log, never changes.
CREATE TABLE log_openings (
    idx     BIGINT PRIMARY KEY,
    salt    BYTEA NOT NULL,
    record  BYTEA NOT NULL
);
