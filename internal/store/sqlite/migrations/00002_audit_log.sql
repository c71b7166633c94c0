-- +goose Up
-- The audit log: entries in chunks, one per commit, the Merkle tree in tiles
-- (with interior rows), and every checkpoint the log signed.
CREATE TABLE log_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    origin     TEXT NOT NULL,
    sequenced  INTEGER NOT NULL,
    integrated INTEGER NOT NULL,
    pruned     INTEGER NOT NULL,
    checkpoint BLOB
) STRICT;

CREATE TABLE log_entries (
    first INTEGER PRIMARY KEY,
    count INTEGER NOT NULL,
    data  BLOB NOT NULL
) STRICT;

-- A tile's id is level << 56 | index: a rowid lookup, so rewriting a
-- growing tile never unpacks its blob to compare keys.
CREATE TABLE log_tiles (
    id    INTEGER PRIMARY KEY,
    width INTEGER NOT NULL,
    data  BLOB NOT NULL
) STRICT;

CREATE TABLE log_checkpoints (
    size INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    note BLOB NOT NULL
) STRICT;

-- Note-signing keys (the log's checkpoint key), sealed like signing keys.
CREATE TABLE note_keys (
    name    TEXT PRIMARY KEY,
    public  BLOB NOT NULL,
    sealed  BLOB NOT NULL,
    sealer  TEXT NOT NULL,
    created INTEGER NOT NULL
) STRICT;

-- Events now go to the audit log.
DROP TABLE events;

-- +goose Down
CREATE TABLE events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    time    INTEGER NOT NULL,
    class   TEXT NOT NULL,
    type    TEXT NOT NULL,
    actor   TEXT NOT NULL,
    subject TEXT NOT NULL,
    client  TEXT NOT NULL,
    ip      TEXT NOT NULL,
    fields  TEXT NOT NULL
) STRICT;
CREATE INDEX events_type ON events (type, seq);
DROP TABLE note_keys;
DROP TABLE log_checkpoints;
DROP TABLE log_tiles;
DROP TABLE log_entries;
DROP TABLE log_state;
