-- +goose Up
-- Shared Signals: the receivers custos sends security events to, and the
-- Security Event Tokens on their way to each.
CREATE TABLE ssf_streams (
    id          TEXT PRIMARY KEY,
    audience    TEXT NOT NULL,
    delivery    TEXT NOT NULL CHECK (delivery IN ('push', 'poll')),
    endpoint    TEXT NOT NULL, -- push: the receiver's URL
    auth_env    TEXT NOT NULL, -- push: the environment variable holding its Authorization header
    poll_hash   BLOB NOT NULL, -- poll: SHA-256 of the receiver's bearer secret
    events      TEXT NOT NULL, -- JSON list of event type URIs
    start_index INTEGER NOT NULL, -- the log index of its ssf_stream_added event
    created_at  INTEGER NOT NULL,
    removed_at  INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE ssf_queue (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id    TEXT NOT NULL,
    jti          TEXT NOT NULL UNIQUE,
    claims       BLOB NOT NULL, -- signed when sent
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    done_at      INTEGER NOT NULL DEFAULT 0, -- delivered (push) or acknowledged (poll)
    given_up_at  INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX ssf_queue_pending ON ssf_queue (stream_id, next_at) WHERE done_at = 0 AND given_up_at = 0;

-- +goose Down
DROP TABLE ssf_queue;
DROP TABLE ssf_streams;
