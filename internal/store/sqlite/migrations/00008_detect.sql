-- +goose Up
-- Detection: how far each detector has read the audit log, and the alerts
-- its rules raised.
CREATE TABLE detector_state (
    name         TEXT PRIMARY KEY,
    next_index   INTEGER NOT NULL,
    warm_index   INTEGER NOT NULL,
    rules_sha256 TEXT NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE alerts (
    id          TEXT PRIMARY KEY,
    rule        TEXT NOT NULL,
    severity    TEXT NOT NULL,
    title       TEXT NOT NULL,
    group_key   TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('open', 'acked')),
    count       INTEGER NOT NULL,
    first_index INTEGER NOT NULL,
    last_index  INTEGER NOT NULL,
    first_at    INTEGER NOT NULL,
    last_at     INTEGER NOT NULL,
    raised_at   INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    acked_by    TEXT NOT NULL DEFAULT '',
    acked_at    INTEGER NOT NULL DEFAULT 0,
    ack_note    TEXT NOT NULL DEFAULT ''
) STRICT;
-- One open alert per rule and group: the pattern grows it.
CREATE UNIQUE INDEX alerts_open ON alerts (rule, group_key) WHERE state = 'open';
CREATE INDEX alerts_raised ON alerts (raised_at);

-- +goose Down
DROP TABLE alerts;
DROP TABLE detector_state;
