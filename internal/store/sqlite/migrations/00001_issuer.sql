-- +goose Up
CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    login_id      TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    disabled_at   INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE clients (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('confidential', 'public')),
    secret_hash   BLOB,
    redirect_uris TEXT NOT NULL, -- JSON array
    scopes        TEXT NOT NULL, -- JSON array
    audiences     TEXT NOT NULL, -- JSON array
    grant_types   TEXT NOT NULL, -- JSON array
    created_at    INTEGER NOT NULL
) STRICT;

-- Signing keys are never deleted, so a kid can never be reused.
CREATE TABLE signing_keys (
    id            TEXT PRIMARY KEY,
    algorithm     TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retired', 'revoked')),
    public_jwk    BLOB NOT NULL,
    sealed        BLOB NOT NULL,
    sealer        TEXT NOT NULL,
    custodian     TEXT NOT NULL,
    imported      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    activate_at   INTEGER NOT NULL DEFAULT 0,
    activated_at  INTEGER NOT NULL DEFAULT 0,
    retired_at    INTEGER NOT NULL DEFAULT 0,
    revoked_at    INTEGER NOT NULL DEFAULT 0,
    publish_until INTEGER NOT NULL DEFAULT 0,
    note          TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE TABLE receipts (
    jti         TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('access', 'refresh', 'id')),
    subject     TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    session_id  TEXT NOT NULL,
    grant_type  TEXT NOT NULL,
    client_ip   TEXT NOT NULL,
    family_id   TEXT NOT NULL,
    revoked_at  INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;
CREATE INDEX receipts_subject ON receipts (subject, expires_at);
CREATE INDEX receipts_family ON receipts (family_id) WHERE family_id != '';
CREATE INDEX receipts_expires ON receipts (expires_at);

CREATE TABLE auth_codes (
    hash           BLOB PRIMARY KEY,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    subject        TEXT NOT NULL,
    session_id     TEXT NOT NULL,
    scope          TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    audience       TEXT NOT NULL,
    auth_time      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER NOT NULL DEFAULT 0,
    family_id      TEXT NOT NULL DEFAULT ''
) STRICT, WITHOUT ROWID;

CREATE TABLE refresh_tokens (
    hash       BLOB PRIMARY KEY,
    jti        TEXT NOT NULL UNIQUE,
    family_id  TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    scope      TEXT NOT NULL,
    audience   TEXT NOT NULL,
    auth_time  INTEGER NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    spent_at   INTEGER NOT NULL DEFAULT 0,
    revoked_at INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;
CREATE INDEX refresh_family ON refresh_tokens (family_id);
CREATE INDEX refresh_subject ON refresh_tokens (subject);
CREATE INDEX refresh_expires ON refresh_tokens (expires_at);

-- Security events, until the tamper-evident audit log takes them over.
CREATE TABLE events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    time    INTEGER NOT NULL,
    class   TEXT NOT NULL,
    type    TEXT NOT NULL,
    actor   TEXT NOT NULL,
    subject TEXT NOT NULL,
    client  TEXT NOT NULL,
    ip      TEXT NOT NULL,
    fields  TEXT NOT NULL -- JSON object
) STRICT;
CREATE INDEX events_type ON events (type, seq);

-- +goose Down
DROP TABLE events;
DROP TABLE refresh_tokens;
DROP TABLE auth_codes;
DROP TABLE receipts;
DROP TABLE signing_keys;
DROP TABLE clients;
DROP TABLE accounts;
