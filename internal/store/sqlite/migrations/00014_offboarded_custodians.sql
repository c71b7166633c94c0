-- +goose Up
-- Key custodians who have left: a key whose custodian is here may be in
-- the hands of someone who no longer answers for it, and detection raises
-- any use of it.
CREATE TABLE offboarded_custodians (
    custodian     TEXT PRIMARY KEY,
    offboarded_at INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    reason        TEXT NOT NULL
) STRICT;

-- +goose Down
DROP TABLE offboarded_custodians;
