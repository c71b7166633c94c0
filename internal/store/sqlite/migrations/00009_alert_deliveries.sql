-- +goose Up
-- Alerts on their way to webhooks: written with the alert, in the
-- detector's transaction, and marked as delivered or retried.
CREATE TABLE alert_deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id     TEXT NOT NULL,
    target       TEXT NOT NULL,
    payload      BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    delivered_at INTEGER NOT NULL DEFAULT 0,
    given_up_at  INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_at) WHERE delivered_at = 0 AND given_up_at = 0;

-- +goose Down
DROP TABLE alert_deliveries;
