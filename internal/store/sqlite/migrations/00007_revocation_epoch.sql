-- +goose Up
-- A counter every revocation of a receipt increases, in the revoking
-- transaction, so that verifiers may cache the receipts they checked and
-- know, from one small read, when any of them may have been revoked.
CREATE TABLE revocation_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL
) STRICT;
INSERT INTO revocation_epoch (id, epoch) VALUES (1, 0);

-- +goose StatementBegin
CREATE TRIGGER receipts_revoked AFTER UPDATE OF revoked_at ON receipts
WHEN NEW.revoked_at != OLD.revoked_at
BEGIN
    UPDATE revocation_epoch SET epoch = epoch + 1 WHERE id = 1;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER receipts_revoked;
DROP TABLE revocation_epoch;
