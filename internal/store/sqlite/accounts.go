package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/custos-dev/custos/internal/store"
)

const accountCols = `id, login_id, name, password_hash, created_at, updated_at, disabled_at`

func scanAccount(sc scanner) (store.Account, error) {
	var a store.Account
	var created, updated, disabled int64
	err := sc.Scan(&a.ID, &a.LoginID, &a.Name, &a.PasswordHash, &created, &updated, &disabled)
	a.CreatedAt, a.UpdatedAt, a.DisabledAt = tm(created), tm(updated), tm(disabled)
	return a, err
}

// CreateAccount inserts a new account. It fails with store.ErrConflict if the
// ID or login ID is taken.
func (s *Store) CreateAccount(ctx context.Context, a store.Account) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO accounts (`+accountCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			a.ID, a.LoginID, a.Name, a.PasswordHash, ts(a.CreatedAt), ts(a.UpdatedAt), ts(a.DisabledAt))
		if isUnique(err) {
			return fmt.Errorf("account %q: %w", a.LoginID, store.ErrConflict)
		}
		return err
	})
}

// CreateAccounts inserts many accounts in one transaction: all of them, or
// none with store.ErrConflict if one's ID or login ID is taken.
func (s *Store) CreateAccounts(ctx context.Context, as []store.Account) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO accounts (`+accountCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, a := range as {
			_, err := st.ExecContext(ctx, a.ID, a.LoginID, a.Name, a.PasswordHash, ts(a.CreatedAt), ts(a.UpdatedAt), ts(a.DisabledAt))
			if isUnique(err) {
				return fmt.Errorf("account %q: %w", a.LoginID, store.ErrConflict)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// Account returns the account with the given ID.
func (s *Store) Account(ctx context.Context, id string) (store.Account, error) {
	return s.accountWhere(ctx, "id = ?", id)
}

// AccountByLoginID returns the account with the given (normalised) login ID.
func (s *Store) AccountByLoginID(ctx context.Context, loginID string) (store.Account, error) {
	return s.accountWhere(ctx, "login_id = ?", loginID)
}

func (s *Store) accountWhere(ctx context.Context, where string, arg any) (store.Account, error) {
	row := s.queryRow(ctx, `SELECT `+accountCols+` FROM accounts WHERE `+where, arg)
	a, err := scanAccount(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Account{}, fmt.Errorf("account: %w", store.ErrNotFound)
	}
	return a, err
}

// UpdatePasswordHash replaces an account's password hash.
func (s *Store) UpdatePasswordHash(ctx context.Context, id, hash string, at time.Time) error {
	return s.updateAccount(ctx, `UPDATE accounts SET password_hash = ?, updated_at = ? WHERE id = ?`, hash, ts(at), id)
}

// DisableAccount marks an account disabled. Disabling a disabled account
// keeps the first time.
func (s *Store) DisableAccount(ctx context.Context, id string, at time.Time) error {
	return s.updateAccount(ctx, `UPDATE accounts SET disabled_at = CASE WHEN disabled_at = 0 THEN ? ELSE disabled_at END, updated_at = ? WHERE id = ?`, ts(at), ts(at), id)
}

func (s *Store) updateAccount(ctx context.Context, q string, args ...any) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("account: %w", store.ErrNotFound)
		}
		return nil
	})
}

// ListAccounts returns up to limit accounts with IDs after after, in ID order.
func (s *Store) ListAccounts(ctx context.Context, after string, limit int) ([]store.Account, error) {
	return queryAll(ctx, s, scanAccount, `SELECT `+accountCols+` FROM accounts WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
}
