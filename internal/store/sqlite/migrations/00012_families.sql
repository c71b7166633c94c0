-- +goose Up
-- A family is one authorization: the tokens an authorization code was
-- redeemed for and every token refreshed from them. Revoking a customer's
-- tokens, a session's or a family's marks families, not tokens: a token is
-- revoked when its own row says so or its family's does. A grant then
-- writes no index keyed by subject, session or family, which cost a page
-- in the write-ahead log per token at random places in those indexes.
--
-- expires_at is the latest expiry of any token in the family: a family
-- whose every token has expired is no longer revoked (there is nothing to
-- revoke) and is pruned with its tokens.
CREATE TABLE families (
    id         TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;
CREATE INDEX families_subject ON families (subject);
CREATE INDEX families_session ON families (session_id) WHERE session_id != '';
CREATE INDEX families_expires ON families (expires_at);

INSERT INTO families (id, subject, session_id, client_id, expires_at)
SELECT family_id, subject, session_id, client_id, max(expires_at) FROM (
    SELECT family_id, subject, session_id, client_id, expires_at FROM receipts WHERE family_id != ''
    UNION ALL
    SELECT family_id, subject, session_id, client_id, expires_at FROM refresh_tokens WHERE family_id != ''
) GROUP BY family_id;

-- +goose StatementBegin
CREATE TRIGGER families_revoked AFTER UPDATE OF revoked_at ON families
WHEN NEW.revoked_at != OLD.revoked_at
BEGIN
    UPDATE revocation_epoch SET epoch = epoch + 1 WHERE id = 1;
END;
-- +goose StatementEnd

DROP INDEX receipts_subject;
DROP INDEX receipts_family;
DROP INDEX refresh_family;
DROP INDEX refresh_subject;

-- +goose Down
-- Families' revocations go back onto their tokens' rows first.
UPDATE receipts SET revoked_at = (SELECT revoked_at FROM families WHERE id = receipts.family_id)
WHERE revoked_at = 0 AND family_id IN (SELECT id FROM families WHERE revoked_at != 0);
UPDATE refresh_tokens SET revoked_at = (SELECT revoked_at FROM families WHERE id = refresh_tokens.family_id)
WHERE revoked_at = 0 AND family_id IN (SELECT id FROM families WHERE revoked_at != 0);
CREATE INDEX receipts_subject ON receipts (subject, expires_at);
CREATE INDEX receipts_family ON receipts (family_id) WHERE family_id != '';
CREATE INDEX refresh_family ON refresh_tokens (family_id);
CREATE INDEX refresh_subject ON refresh_tokens (subject);
DROP TRIGGER families_revoked;
DROP TABLE families;
