package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/custos-dev/custos/internal/store"
)

const keyCols = `id, algorithm, state, public_jwk, sealed, sealer, custodian, imported, created_at,
	activate_at, activated_at, retired_at, revoked_at, publish_until, note`

// InsertKey stores a new signing key. Key IDs are never reused: inserting a
// known ID fails with store.ErrConflict, even if that key was revoked long ago.
func (s *Store) InsertKey(ctx context.Context, k store.Key) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO signing_keys (`+keyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			k.ID, k.Algorithm, string(k.State), k.PublicJWK, k.Sealed, k.Sealer, k.Custodian, boolInt(k.Imported),
			ts(k.CreatedAt), ts(k.ActivateAt), ts(k.ActivatedAt), ts(k.RetiredAt), ts(k.RevokedAt), ts(k.PublishUntil), k.Note)
		if isUnique(err) {
			return fmt.Errorf("key %q: %w", k.ID, store.ErrConflict)
		}
		return err
	})
}

// Keys returns every key ever stored, oldest first.
func (s *Store) Keys(ctx context.Context) ([]store.Key, error) {
	rows, err := s.query(ctx, `SELECT `+keyCols+` FROM signing_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Key
	for rows.Next() {
		var k store.Key
		var state string
		var imported, created, activateAt, activated, retired, revoked, until int64
		if err := rows.Scan(&k.ID, &k.Algorithm, &state, &k.PublicJWK, &k.Sealed, &k.Sealer, &k.Custodian, &imported,
			&created, &activateAt, &activated, &retired, &revoked, &until, &k.Note); err != nil {
			return nil, err
		}
		k.State, k.Imported = store.KeyState(state), imported != 0
		k.CreatedAt, k.ActivateAt, k.ActivatedAt = tm(created), tm(activateAt), tm(activated)
		k.RetiredAt, k.RevokedAt, k.PublishUntil = tm(retired), tm(revoked), tm(until)
		out = append(out, k)
	}
	return out, rows.Err()
}

// UpdateKey writes a key's state, lifecycle times and note, but only if its
// stored state is still from; otherwise it fails with store.ErrConflict. The
// key material, algorithm and custodian never change, except that revoking
// a key destroys its sealed private key: a revoked key is never unsealed
// again, so nothing is lost, and a later theft of the root key and a copy
// of the database yields no revoked key.
func (s *Store) UpdateKey(ctx context.Context, k store.Key, from store.KeyState) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		revoking := k.State == store.KeyRevoked
		if revoking {
			// Overwrite the sealed key's old bytes in the page, not just
			// drop them from the row.
			if _, err := tx.ExecContext(ctx, `PRAGMA secure_delete = ON`); err != nil {
				return err
			}
			defer tx.ExecContext(ctx, `PRAGMA secure_delete = OFF`)
		}
		res, err := tx.ExecContext(ctx, `UPDATE signing_keys SET state = ?, activate_at = ?, activated_at = ?,
			retired_at = ?, revoked_at = ?, publish_until = ?, note = ?,
			sealed = CASE WHEN ? THEN X'' ELSE sealed END WHERE id = ? AND state = ?`,
			string(k.State), ts(k.ActivateAt), ts(k.ActivatedAt), ts(k.RetiredAt), ts(k.RevokedAt), ts(k.PublishUntil), k.Note,
			revoking, k.ID, string(from))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var exists int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM signing_keys WHERE id = ?`, k.ID).Scan(&exists); err != nil {
				return err
			}
			if exists == 0 {
				return fmt.Errorf("key %q: %w", k.ID, store.ErrNotFound)
			}
			return fmt.Errorf("key %q is no longer %s: %w", k.ID, from, store.ErrConflict)
		}
		return nil
	})
}

// DestroySealedKey overwrites the sealed private key of a retired key
// (secure_delete: the old bytes are zeroed in the page, not just dropped
// from the row). It fails with store.ErrConflict if the key is not retired.
func (s *Store) DestroySealedKey(ctx context.Context, kid string) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `PRAGMA secure_delete = ON`); err != nil {
			return err
		}
		defer tx.ExecContext(ctx, `PRAGMA secure_delete = OFF`)
		res, err := tx.ExecContext(ctx, `UPDATE signing_keys SET sealed = X'' WHERE id = ? AND state = ?`, kid, string(store.KeyRetired))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var state string
			err := tx.QueryRowContext(ctx, `SELECT state FROM signing_keys WHERE id = ?`, kid).Scan(&state)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("key %q: %w", kid, store.ErrNotFound)
			}
			if err != nil {
				return err
			}
			return fmt.Errorf("key %q is %s, not retired: %w", kid, state, store.ErrConflict)
		}
		return nil
	})
}

// OffboardCustodian records that a custodian has left. Offboarding a
// custodian twice fails with store.ErrConflict and keeps the first record.
func (s *Store) OffboardCustodian(ctx context.Context, o store.Offboarding) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO offboarded_custodians (custodian, offboarded_at, actor, reason) VALUES (?, ?, ?, ?)`,
			o.Custodian, ts(o.At), o.Actor, o.Reason)
		if isUnique(err) {
			return fmt.Errorf("custodian %q was already offboarded: %w", o.Custodian, store.ErrConflict)
		}
		return err
	})
}

// OffboardedCustodians returns every offboarded custodian, in the order
// they left.
func (s *Store) OffboardedCustodians(ctx context.Context) ([]store.Offboarding, error) {
	return queryAll(ctx, s, func(sc scanner) (o store.Offboarding, err error) {
		var at int64
		err = sc.Scan(&o.Custodian, &at, &o.Actor, &o.Reason)
		o.At = tm(at)
		return o, err
	}, `SELECT custodian, offboarded_at, actor, reason FROM offboarded_custodians ORDER BY offboarded_at, custodian`)
}
