-- +goose Up
-- Client ids are never reused: receipts, refresh tokens and audit events
-- name clients by id, and a new client under an old id would inherit its
-- history in every one of them.
CREATE TABLE removed_clients (
    id         TEXT PRIMARY KEY,
    removed_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- +goose Down
DROP TABLE removed_clients;
