-- +goose Up
-- A witness's own state, in the database of a custos running as a witness:
-- its name, fixed when it is created, and per log the latest checkpoint it
-- cosigned, with the log's signature and its own cosignature.
CREATE TABLE witness_identity (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL
) STRICT;

CREATE TABLE witness_logs (
    origin     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    root       BLOB NOT NULL,
    checkpoint BLOB NOT NULL,
    time       INTEGER NOT NULL
) STRICT;

-- The log side: per witness (by its verifier key), the size of the largest
-- checkpoint it cosigned. The cosignatures themselves are appended to the
-- checkpoint notes in log_checkpoints.
CREATE TABLE log_witnesses (
    witness TEXT PRIMARY KEY,
    size    INTEGER NOT NULL,
    time    INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE log_witnesses;
DROP TABLE witness_logs;
DROP TABLE witness_identity;
