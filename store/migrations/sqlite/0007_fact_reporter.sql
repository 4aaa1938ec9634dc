-- Poisoning bounds (spec/reputation.md, Bounds): an incident fact names the independent
-- reporter behind it, so one reporter adds at most one incident fact about a domain per
-- window however many reports it sends.
ALTER TABLE reputation_facts ADD COLUMN reporter TEXT NOT NULL DEFAULT '';
CREATE INDEX reputation_facts_by_reporter ON reputation_facts (subject, reporter, at);
