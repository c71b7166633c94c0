-- +goose Up
-- Client IPs the guard refuses for a while: an automatic response of a
-- detection rule, or an operator's.
CREATE TABLE ip_blocks (
    ip         TEXT PRIMARY KEY,
    until      INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE ip_blocks;
