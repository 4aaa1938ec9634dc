-- Reads of the operator's pages, on indexes so they cost what they show, not the history.
-- An incident's page shows to whom it went and when: its outbox rows, by reference
-- (reports, requests and responses are kept for good).
CREATE INDEX outbox_reference ON outbox (reference, kind);
-- The dashboard's plots: incidents received per day, and the change feed of a window with
-- each change's previous change of the same value.
CREATE INDEX incidents_by_received ON incidents (received_at);
CREATE INDEX list_changes_by_time ON list_changes (at);
CREATE INDEX list_changes_by_value ON list_changes (kind, value, seq);
