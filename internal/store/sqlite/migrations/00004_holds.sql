-- +goose Up
-- Legal holds and retention policy for the audit log, and the outbox of
-- audit events written with the changes they record.
CREATE TABLE audit_holds (
    id                   TEXT PRIMARY KEY,
    time_from            INTEGER NOT NULL,
    time_until           INTEGER NOT NULL,
    classes              TEXT NOT NULL, -- JSON list; [] is every class
    reason               TEXT NOT NULL,
    created_by           TEXT NOT NULL,
    created_at           INTEGER NOT NULL,
    release_requested_at INTEGER NOT NULL DEFAULT 0,
    release_effective_at INTEGER NOT NULL DEFAULT 0,
    released_by          TEXT NOT NULL DEFAULT '',
    release_reason       TEXT NOT NULL DEFAULT '',
    release_recorded     INTEGER NOT NULL DEFAULT 0
) STRICT;

-- One row per class whose retention was ever set; durations in nanoseconds.
CREATE TABLE audit_retention (
    class                TEXT PRIMARY KEY,
    retention            INTEGER NOT NULL,
    set_by               TEXT NOT NULL,
    set_reason           TEXT NOT NULL,
    set_at               INTEGER NOT NULL,
    pending              INTEGER NOT NULL DEFAULT 0,
    pending_by           TEXT NOT NULL DEFAULT '',
    pending_reason       TEXT NOT NULL DEFAULT '',
    pending_at           INTEGER NOT NULL DEFAULT 0,
    pending_effective_at INTEGER NOT NULL DEFAULT 0
) STRICT;

-- version changes with every write to holds or retention: the prune's
-- compare-and-swap.
CREATE TABLE retention_state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
) STRICT;
INSERT INTO retention_state (id, version) VALUES (1, 0);

CREATE TABLE event_outbox (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    data BLOB NOT NULL
) STRICT;

-- +goose Down
DROP TABLE event_outbox;
DROP TABLE retention_state;
DROP TABLE audit_retention;
DROP TABLE audit_holds;
