-- +goose Up
-- A refresh token's row is its receipt: it records, as access and ID
-- token receipts do, the grant that issued it and the client's IP.
ALTER TABLE refresh_tokens ADD COLUMN grant_type TEXT NOT NULL DEFAULT '';
ALTER TABLE refresh_tokens ADD COLUMN client_ip TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE refresh_tokens DROP COLUMN client_ip;
ALTER TABLE refresh_tokens DROP COLUMN grant_type;
