package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/custos-dev/custos/internal/store"
)

const clientCols = `id, name, kind, secret_hash, redirect_uris, scopes, audiences, grant_types, created_at`

func scanClient(sc scanner) (store.Client, error) {
	var c store.Client
	var kind, redirects, scopes, auds, grants string
	var created int64
	if err := sc.Scan(&c.ID, &c.Name, &kind, &c.SecretHash, &redirects, &scopes, &auds, &grants, &created); err != nil {
		return c, err
	}
	c.Kind, c.CreatedAt = store.ClientKind(kind), tm(created)
	var err error
	for _, f := range []struct {
		dst *[]string
		src string
	}{{&c.RedirectURIs, redirects}, {&c.Scopes, scopes}, {&c.Audiences, auds}, {&c.GrantTypes, grants}} {
		if *f.dst, err = parseList(f.src); err != nil {
			return c, fmt.Errorf("client %q: corrupt list: %w", c.ID, err)
		}
	}
	return c, nil
}

// CreateClient registers a client; store.ErrConflict if the ID is taken.
func (s *Store) CreateClient(ctx context.Context, c store.Client) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var removed int64
		err := tx.QueryRowContext(ctx, `SELECT count(*) FROM removed_clients WHERE id = ?`, c.ID).Scan(&removed)
		if err != nil {
			return err
		}
		if removed > 0 {
			return fmt.Errorf("client %q was removed; its id is not reused: %w", c.ID, store.ErrConflict)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO clients (`+clientCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, c.Name, string(c.Kind), c.SecretHash, jsonList(c.RedirectURIs), jsonList(c.Scopes),
			jsonList(c.Audiences), jsonList(c.GrantTypes), ts(c.CreatedAt))
		if isUnique(err) {
			return fmt.Errorf("client %q: %w", c.ID, store.ErrConflict)
		}
		return err
	})
}

// Client returns the client with the given ID.
func (s *Store) Client(ctx context.Context, id string) (store.Client, error) {
	c, err := scanClient(s.queryRow(ctx, `SELECT `+clientCols+` FROM clients WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Client{}, fmt.Errorf("client: %w", store.ErrNotFound)
	}
	return c, err
}

// ListClients returns every client in ID order.
func (s *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	return queryAll(ctx, s, scanClient, `SELECT `+clientCols+` FROM clients ORDER BY id`)
}

// DeleteClient removes a client. Its unexpired tokens' receipts are revoked
// and its refresh tokens with them, in the same transaction, and its id is
// retired: CreateClient refuses it from then on.
func (s *Store) DeleteClient(ctx context.Context, id string, at time.Time) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM clients WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("client: %w", store.ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO removed_clients (id, removed_at) VALUES (?, ?)`, id, ts(at)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE receipts SET revoked_at = ? WHERE client_id = ? AND revoked_at = 0 AND expires_at > ?`, ts(at), id, ts(at)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = ? WHERE client_id = ? AND revoked_at = 0`, ts(at), id)
		return err
	})
}
