-- The CrowdSec-compatible decision stream (spec/firewalls.md): each bouncer key's position,
-- as the CrowdSec LAPI keeps one per bouncer. `seq` is the change-feed position the key has
-- been sent everything up to; `pulled_at` is when, which places the daily refresh window.
CREATE TABLE bouncer_cursors (
    token_id    BIGINT PRIMARY KEY REFERENCES tokens (id),
    seq         BIGINT NOT NULL,
    pulled_at   BIGINT NOT NULL
);
-- A decision lasting longer than a firewall set can hold is sent again once a day, at a second
-- of the day its entry id picks (`id % 86400`), so one poll refreshes only that second's share.
CREATE INDEX entries_refresh_slot ON entries ((id % 86400));
-- The deletions a bouncer's start-up pull carries: address entries that changed recently.
CREATE INDEX entries_by_kind_update ON entries (kind, updated_at);
