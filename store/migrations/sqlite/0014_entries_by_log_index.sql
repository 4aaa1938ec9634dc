-- Replicas follow each other's commits by reading the entries whose log index is past their
-- tree (every change to an entry gives it its commit's leaf).
CREATE INDEX entries_by_log_index ON entries (log_index);
