-- XEP-0275 answers from buddies: the latest score each peer gave for each subject, kept as
-- inputs for the reputation engine.
CREATE TABLE peer_scores (
    peer        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    num         BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (peer, subject)
);
CREATE INDEX peer_scores_by_subject ON peer_scores (subject);
