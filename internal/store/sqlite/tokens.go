package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/custos-dev/custos/internal/store"
)

const receiptCols = `jti, kind, subject, client_id, key_id, issued_at, expires_at, session_id, grant_type, client_ip, family_id, revoked_at`

const receiptRow = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// qInsertReceipts inserts one to three receipts (a grant's access, ID and
// refresh tokens) in one statement.
var qInsertReceipts = [...]string{
	`INSERT OR FAIL INTO receipts (` + receiptCols + `) VALUES ` + receiptRow,
	`INSERT OR FAIL INTO receipts (` + receiptCols + `) VALUES ` + receiptRow + `, ` + receiptRow,
	`INSERT OR FAIL INTO receipts (` + receiptCols + `) VALUES ` + receiptRow + `, ` + receiptRow + `, ` + receiptRow,
}

func (s *Store) insertReceipts(ctx context.Context, tx *sql.Tx, rs []store.Receipt) error {
	for len(rs) > 0 {
		n := min(len(rs), len(qInsertReceipts))
		args := make([]any, 0, 12*n)
		for _, r := range rs[:n] {
			args = append(args, r.JTI, string(r.Kind), r.Subject, r.ClientID, r.KeyID, ts(r.IssuedAt), ts(r.ExpiresAt),
				r.SessionID, r.Grant, r.ClientIP, r.FamilyID, ts(r.RevokedAt))
		}
		_, err := s.exec(ctx, tx, qInsertReceipts[n-1], args...)
		if isUnique(err) {
			return fmt.Errorf("receipt: %w", store.ErrConflict)
		}
		if err != nil {
			return err
		}
		rs = rs[n:]
	}
	return nil
}

const qInsertRefresh = `INSERT OR FAIL INTO refresh_tokens (hash, jti, family_id, client_id, subject, session_id, scope,
		audience, auth_time, issued_at, expires_at, spent_at, revoked_at, grant_type, client_ip) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

func (s *Store) insertRefresh(ctx context.Context, tx *sql.Tx, t *store.RefreshToken) error {
	if t == nil {
		return nil
	}
	_, err := s.exec(ctx, tx, qInsertRefresh,
		t.Hash, t.JTI, t.FamilyID, t.ClientID, t.Subject, t.SessionID, t.Scope, t.Audience,
		ts(t.AuthTime), ts(t.IssuedAt), ts(t.ExpiresAt), ts(t.SpentAt), ts(t.RevokedAt), t.Grant, t.ClientIP)
	if isUnique(err) {
		return fmt.Errorf("refresh token: %w", store.ErrConflict)
	}
	return err
}

// InsertGrant durably records a grant's receipts, refresh token and audit
// events, all or nothing. Tokens may be handed out only after it returns nil.
func (s *Store) InsertGrant(ctx context.Context, g store.Grant) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return s.insertGrant(ctx, tx, g)
	})
}

// insertGrant writes a grant's receipts, refresh token, family and events
// in tx.
func (s *Store) insertGrant(ctx context.Context, tx *sql.Tx, g store.Grant) error {
	if err := s.insertReceipts(ctx, tx, g.Receipts); err != nil {
		return err
	}
	if err := s.insertRefresh(ctx, tx, g.Refresh); err != nil {
		return err
	}
	if err := s.recordFamilies(ctx, tx, g); err != nil {
		return err
	}
	return s.appendEvents(ctx, tx, g.Events)
}

// qRecordFamily adds a family, or moves its expiry later when a token
// outlives the family's earlier ones (an access token refreshed shortly
// before the refresh token expires). Most grants change nothing here.
const qRecordFamily = `INSERT INTO families (id, subject, session_id, client_id, expires_at) VALUES (?, ?, ?, ?, ?)
	ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at WHERE excluded.expires_at > families.expires_at`

// recordFamilies records the family of each token in g (there is at most
// one in a grant custos makes) with the latest expiry among them, so that
// revoking the family, its session or its subject reaches every token.
func (s *Store) recordFamilies(ctx context.Context, tx *sql.Tx, g store.Grant) error {
	type family struct {
		subject, session, client string
		expires                  time.Time
	}
	var ids []string
	fams := map[string]*family{}
	add := func(id, subject, session, client string, exp time.Time) {
		if id == "" {
			return
		}
		f := fams[id]
		if f == nil {
			f = &family{subject: subject, session: session, client: client}
			fams[id] = f
			ids = append(ids, id)
		}
		if exp.After(f.expires) {
			f.expires = exp
		}
	}
	for _, r := range g.Receipts {
		add(r.FamilyID, r.Subject, r.SessionID, r.ClientID, r.ExpiresAt)
	}
	if t := g.Refresh; t != nil {
		add(t.FamilyID, t.Subject, t.SessionID, t.ClientID, t.ExpiresAt)
	}
	for _, id := range ids {
		f := fams[id]
		if _, err := s.exec(ctx, tx, qRecordFamily, id, f.subject, f.session, f.client, ts(f.expires)); err != nil {
			return err
		}
	}
	return nil
}

// effectiveRevocation is a token row's revocation time: its own, or else
// its family's. r is the token table's alias, f the joined family's.
const effectiveRevocation = `CASE WHEN r.revoked_at != 0 THEN r.revoked_at ELSE coalesce(f.revoked_at, 0) END`

// Receipt returns the receipt for jti. It is revoked if it was revoked
// itself or its family was.
func (s *Store) Receipt(ctx context.Context, jti string) (store.Receipt, error) {
	var r store.Receipt
	var kind string
	var iat, exp, revoked int64
	err := s.queryRow(ctx, `SELECT r.jti, r.kind, r.subject, r.client_id, r.key_id, r.issued_at, r.expires_at, r.session_id,
		r.grant_type, r.client_ip, r.family_id, `+effectiveRevocation+`
		FROM receipts r LEFT JOIN families f ON f.id = r.family_id WHERE r.jti = ?`, jti).Scan(
		&r.JTI, &kind, &r.Subject, &r.ClientID, &r.KeyID, &iat, &exp, &r.SessionID, &r.Grant, &r.ClientIP, &r.FamilyID, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Receipt{}, fmt.Errorf("receipt: %w", store.ErrNotFound)
	}
	r.Kind, r.IssuedAt, r.ExpiresAt, r.RevokedAt = store.ReceiptKind(kind), tm(iat), tm(exp), tm(revoked)
	return r, err
}

// RevokeReceipt revokes one token's receipt. Revoking a revoked receipt keeps
// the first time and is not an error.
func (s *Store) RevokeReceipt(ctx context.Context, jti string, at time.Time) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE receipts SET revoked_at = CASE WHEN revoked_at = 0 THEN ? ELSE revoked_at END WHERE jti = ?`, ts(at), jti)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("receipt: %w", store.ErrNotFound)
		}
		_, err = tx.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = ? WHERE jti = ? AND revoked_at = 0`, ts(at), jti)
		return err
	})
}

// RevokeSubject revokes every unexpired family of a subject, and with them
// every token issued to the subject so far (password change, account
// disabled). It returns how many families it revoked.
func (s *Store) RevokeSubject(ctx context.Context, subject string, at time.Time) (int, error) {
	return s.revokeFamilies(ctx, "subject = ?", subject, at)
}

// RevokeFamily revokes every token descending from one authorization
// (refresh-token reuse, replayed code, RFC 7009 revocation). It returns 1,
// or 0 if the family was already revoked or every token in it has expired.
func (s *Store) RevokeFamily(ctx context.Context, familyID string, at time.Time) (int, error) {
	if familyID == "" {
		return 0, nil
	}
	return s.revokeFamilies(ctx, "id = ?", familyID, at)
}

// RevokeSession revokes every family, and so every token, of a login
// session. It returns how many families it revoked.
func (s *Store) RevokeSession(ctx context.Context, sessionID string, at time.Time) (int, error) {
	if sessionID == "" {
		return 0, nil
	}
	return s.revokeFamilies(ctx, "session_id = ?", sessionID, at)
}

func (s *Store) revokeFamilies(ctx context.Context, where, arg string, at time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE families SET revoked_at = ? WHERE `+where+` AND revoked_at = 0 AND expires_at > ?`, ts(at), arg, ts(at))
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return int(n), err
}

// Prune deletes receipts, refresh tokens, families and authorization codes
// that expired before before. It returns how many receipts it deleted.
func (s *Store) Prune(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM receipts WHERE expires_at < ?`, ts(before))
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		if _, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE expires_at < ?`, ts(before)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM families WHERE expires_at < ?`, ts(before)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM auth_codes WHERE expires_at < ?`, ts(before))
		return err
	})
	return int(n), err
}

// InsertAuthCode stores a new authorization code.
func (s *Store) InsertAuthCode(ctx context.Context, c store.AuthCode) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO auth_codes (hash, client_id, redirect_uri, subject, session_id, scope, nonce,
			code_challenge, audience, auth_time, expires_at, used_at, family_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.Hash, c.ClientID, c.RedirectURI, c.Subject, c.SessionID, c.Scope, c.Nonce, c.CodeChallenge, c.Audience,
			ts(c.AuthTime), ts(c.ExpiresAt), ts(c.UsedAt), c.FamilyID)
		if isUnique(err) {
			return fmt.Errorf("authorization code: %w", store.ErrConflict)
		}
		return err
	})
}

// AuthCode returns the authorization code with the given hash.
func (s *Store) AuthCode(ctx context.Context, hash []byte) (store.AuthCode, error) {
	var c store.AuthCode
	var authTime, exp, used int64
	err := s.queryRow(ctx, `SELECT hash, client_id, redirect_uri, subject, session_id, scope, nonce, code_challenge,
		audience, auth_time, expires_at, used_at, family_id FROM auth_codes WHERE hash = ?`, hash).Scan(
		&c.Hash, &c.ClientID, &c.RedirectURI, &c.Subject, &c.SessionID, &c.Scope, &c.Nonce, &c.CodeChallenge,
		&c.Audience, &authTime, &exp, &used, &c.FamilyID)
	if errors.Is(err, sql.ErrNoRows) {
		return store.AuthCode{}, fmt.Errorf("authorization code: %w", store.ErrNotFound)
	}
	c.AuthTime, c.ExpiresAt, c.UsedAt = tm(authTime), tm(exp), tm(used)
	return c, err
}

// RedeemAuthCode spends an authorization code and records the grant it
// produced, all or nothing. A code that was already spent fails with
// store.ErrReused and changes nothing: the caller should revoke the family
// the first redemption created.
func (s *Store) RedeemAuthCode(ctx context.Context, hash []byte, at time.Time, familyID string, g store.Grant) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE auth_codes SET used_at = ?, family_id = ? WHERE hash = ? AND used_at = 0`, ts(at), familyID, hash)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var used int64
			err := tx.QueryRowContext(ctx, `SELECT used_at FROM auth_codes WHERE hash = ?`, hash).Scan(&used)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("authorization code: %w", store.ErrNotFound)
			}
			if err != nil {
				return err
			}
			return fmt.Errorf("authorization code: %w", store.ErrReused)
		}
		return s.insertGrant(ctx, tx, g)
	})
}

// RefreshToken returns the refresh token with the given hash. It is revoked
// if it was revoked itself or its family was.
func (s *Store) RefreshToken(ctx context.Context, hash []byte) (store.RefreshToken, error) {
	var t store.RefreshToken
	var authTime, iat, exp, spent, revoked int64
	err := s.queryRow(ctx, `SELECT r.hash, r.jti, r.family_id, r.client_id, r.subject, r.session_id, r.scope, r.audience,
		r.auth_time, r.issued_at, r.expires_at, r.spent_at, `+effectiveRevocation+`, r.grant_type, r.client_ip
		FROM refresh_tokens r LEFT JOIN families f ON f.id = r.family_id WHERE r.hash = ?`, hash).Scan(
		&t.Hash, &t.JTI, &t.FamilyID, &t.ClientID, &t.Subject, &t.SessionID, &t.Scope, &t.Audience,
		&authTime, &iat, &exp, &spent, &revoked, &t.Grant, &t.ClientIP)
	if errors.Is(err, sql.ErrNoRows) {
		return store.RefreshToken{}, fmt.Errorf("refresh token: %w", store.ErrNotFound)
	}
	t.AuthTime, t.IssuedAt, t.ExpiresAt, t.SpentAt, t.RevokedAt = tm(authTime), tm(iat), tm(exp), tm(spent), tm(revoked)
	return t, err
}

// RotateRefresh spends the refresh token with hash old and records the grant
// that replaces it, all or nothing. If old was already spent it fails with
// store.ErrReused; if it was revoked, with store.ErrNotFound. Either way
// nothing changes; on ErrReused the caller revokes the family.
const qSpendRefresh = `UPDATE OR FAIL refresh_tokens SET spent_at = ? WHERE hash = ? AND spent_at = 0 AND revoked_at = 0
	AND NOT EXISTS (SELECT 1 FROM families WHERE id = refresh_tokens.family_id AND revoked_at != 0)`

func (s *Store) RotateRefresh(ctx context.Context, old []byte, at time.Time, g store.Grant) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, qSpendRefresh, ts(at), old)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var spent, revoked int64
			err := tx.QueryRowContext(ctx, `SELECT r.spent_at, `+effectiveRevocation+`
				FROM refresh_tokens r LEFT JOIN families f ON f.id = r.family_id WHERE r.hash = ?`, old).Scan(&spent, &revoked)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("refresh token: %w", store.ErrNotFound)
			case err != nil:
				return err
			case revoked != 0:
				return fmt.Errorf("refresh token revoked: %w", store.ErrNotFound)
			default:
				return fmt.Errorf("refresh token: %w", store.ErrReused)
			}
		}
		return s.insertGrant(ctx, tx, g)
	})
}

// RevocationEpoch returns a counter that every revocation of a receipt or a
// family increases in the revoking transaction (the triggers of migrations
// 7 and 12): while it is unchanged, no token has been revoked.
func (s *Store) RevocationEpoch(ctx context.Context) (uint64, error) {
	var epoch int64
	err := s.queryRow(ctx, `SELECT epoch FROM revocation_epoch WHERE id = 1`).Scan(&epoch)
	return uint64(epoch), err
}
