-- The reputation engine (spec/reputation.md).
--
-- reputation_facts: what each decision taught us about a domain, written in the same
--   transaction as the decision. `subject` is the domain with its labels reversed
--   (`a.example` -> `example.a`), so a domain and all its subdomains are one index range.
--   `reference` is the incident (or request) behind the fact; a fact is recorded once.
-- reputation_scores: the latest score of every domain we hold facts about, rewritten when a
--   fact touches it and refreshed when it grows stale, so listing by score is one index scan.
-- reputation_overrides: scores the operator fixed.
-- candidate_reasons: accepted contributions to offenders not yet listed, waiting for the
--   listing quorum of independent reporters.

CREATE TABLE reputation_facts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    subject      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    at           BIGINT NOT NULL,
    severity     TEXT,
    weight_milli BIGINT NOT NULL,
    reference    TEXT NOT NULL,
    UNIQUE (subject, kind, reference)
);
CREATE INDEX reputation_facts_by_subject ON reputation_facts (subject, at);
CREATE INDEX reputation_facts_by_reference ON reputation_facts (reference);

CREATE TABLE reputation_scores (
    domain      TEXT PRIMARY KEY,
    score       BIGINT NOT NULL,
    raw         BIGINT NOT NULL,
    components  TEXT NOT NULL,
    facts       BIGINT NOT NULL,
    computed_at BIGINT NOT NULL
);
CREATE INDEX reputation_scores_by_score ON reputation_scores (score, domain);
CREATE INDEX reputation_scores_by_age ON reputation_scores (computed_at);

CREATE TABLE reputation_overrides (
    domain      TEXT PRIMARY KEY,
    score       BIGINT NOT NULL,
    note        TEXT NOT NULL,
    set_at      BIGINT NOT NULL,
    log_index   BIGINT NOT NULL
);

CREATE TABLE candidate_reasons (
    kind         TEXT NOT NULL,
    value        TEXT NOT NULL,
    incident_id  TEXT NOT NULL,
    reporter     TEXT NOT NULL,
    weight_milli BIGINT NOT NULL,
    severity     TEXT NOT NULL,
    action       TEXT NOT NULL,
    added_at     BIGINT NOT NULL,
    PRIMARY KEY (kind, value, incident_id)
);
CREATE INDEX candidate_reasons_by_incident ON candidate_reasons (incident_id);
CREATE INDEX candidate_reasons_by_age ON candidate_reasons (added_at);
