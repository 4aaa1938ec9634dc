-- A domain's standing as a reporter (spec/reputation.md, Reporter weight): its score without
-- the incidents about its users, kept so a fall to `ignore_below` is noticed once.
ALTER TABLE reputation_scores ADD COLUMN reporter_score BIGINT NOT NULL DEFAULT 0;
