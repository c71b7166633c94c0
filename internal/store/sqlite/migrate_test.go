package sqlite

import (
	"bytes"
	"database/sql"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/custos-dev/custos/internal/store"
)

// migratedTo makes a database in a temporary directory and migrates it to
// version; it returns the database's path, a connection to it, and the
// migrations to move it further.
func migratedTo(t *testing.T, version int64) (string, *sql.DB, *goose.Provider) {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys, goose.WithDisableGlobalRegistry(true), goose.WithGoMigrations(splitTiles, logFiles))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(t.Context(), version); err != nil {
		t.Fatal(err)
	}
	return path, db, p
}

// TestMigrateTilesToParts builds a database as migration 5 left it, with
// whole tiles, and checks that opening it moves every tile into parts that
// read back the same, and that migrating down restores the whole tiles.
func TestMigrateTilesToParts(t *testing.T) {
	ctx := t.Context()
	path, db, p := migratedTo(t, 5)

	// Whole tiles as they were stored: rows bottom-up, any width. More
	// than one read batch of them.
	r := rand.New(rand.NewPCG(1, 2))
	var tiles []store.Tile
	for i := range 150 {
		w := 1 + r.IntN(store.TileWidth)
		if i%3 == 0 {
			w = store.TileWidth
		}
		tile := store.Tile{Level: uint8(i % 3), Index: uint64(i) * 1000, Width: w}
		for k := range store.TileHeight {
			for range (w >> k) * store.HashSize {
				tile.Data = append(tile.Data, byte(r.Uint32()))
			}
		}
		tiles = append(tiles, tile)
	}
	for _, tile := range tiles {
		if _, err := db.ExecContext(ctx, `INSERT INTO log_tiles (id, width, data) VALUES (?, ?, ?)`,
			int64(tile.Level)<<56|int64(tile.Index), tile.Width, tile.Data); err != nil {
			t.Fatal(err)
		}
	}

	st, err := OpenFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range tiles {
		got, err := store.ReadTile(ctx, st, want.Level, want.Index)
		if err != nil {
			t.Fatalf("tile %d/%d after migration: %v", want.Level, want.Index, err)
		}
		if got.Width != want.Width || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("tile %d/%d after migration: width %d, want %d, or different hashes", want.Level, want.Index, got.Width, want.Width)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := p.DownTo(ctx, 5); err != nil {
		t.Fatal(err)
	}
	for _, want := range tiles {
		var width int
		var data []byte
		if err := db.QueryRowContext(ctx, `SELECT width, data FROM log_tiles WHERE id = ?`, int64(want.Level)<<56|int64(want.Index)).Scan(&width, &data); err != nil {
			t.Fatalf("tile %d/%d after migrating down: %v", want.Level, want.Index, err)
		}
		if width != want.Width || !bytes.Equal(data, want.Data) {
			t.Fatalf("tile %d/%d after migrating down differs", want.Level, want.Index)
		}
	}
}

// TestMigrateFamilies builds a database as migration 11 left it, with
// tokens revoked row by row, and checks that opening it records every
// family, so that revoking a family, session or subject reaches tokens
// issued before the migration, and that migrating down puts the families'
// revocations back onto their tokens.
func TestMigrateFamilies(t *testing.T) {
	ctx := t.Context()
	path, db, p := migratedTo(t, 11)
	now := time.Now()
	exp := now.Add(time.Hour).UnixNano()
	for _, q := range []string{
		`INSERT INTO receipts (jti, kind, subject, client_id, key_id, issued_at, expires_at, session_id, grant_type, client_ip, family_id, revoked_at) VALUES
			('a1', 'access', 'acc_1', 'shop', 'k', 1, ?1, 'sid-1', 'authorization_code', '', 'f1', 0),
			('a2', 'access', 'acc_1', 'shop', 'k', 1, ?1, 'sid-2', 'refresh_token', '', 'f2', 0),
			('a3', 'access', 'acc_2', 'shop', 'k', 1, ?1, 'sid-3', 'authorization_code', '', 'f3', 0),
			('a4', 'access', 'acc_2', 'shop', 'k', 1, ?1, 'sid-3', 'authorization_code', '', 'f4', 0),
			('svc', 'access', 'svc', 'svc', 'k', 1, ?1, '', 'client_credentials', '', '', 0)`,
		`INSERT INTO refresh_tokens (hash, jti, family_id, client_id, subject, session_id, scope, audience, auth_time, issued_at, expires_at, spent_at, revoked_at) VALUES
			(x'01', 'r1', 'f1', 'shop', 'acc_1', 'sid-1', '', '', 1, 1, ?1, 0, 0),
			(x'03', 'r3', 'f3', 'shop', 'acc_2', 'sid-3', '', '', 1, 1, ?1, 0, 0)`,
	} {
		if _, err := db.ExecContext(ctx, q, exp); err != nil {
			t.Fatal(err)
		}
	}

	st, err := OpenFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		revoke func() (int, error)
		want   int
	}{
		{func() (int, error) { return st.RevokeSubject(ctx, "acc_1", now) }, 2},
		{func() (int, error) { return st.RevokeSession(ctx, "sid-3", now) }, 2},
	} {
		if n, err := c.revoke(); err != nil || n != c.want {
			t.Fatalf("revoking tokens issued before the migration: %d, %v; want %d", n, err, c.want)
		}
	}
	for _, jti := range []string{"a1", "a2", "a3", "a4"} {
		if r, err := st.Receipt(ctx, jti); err != nil || !r.Revoked() {
			t.Fatalf("receipt %s after revocation: revoked %v, %v", jti, r.Revoked(), err)
		}
	}
	if r, err := st.Receipt(ctx, "svc"); err != nil || r.Revoked() {
		t.Fatalf("a service token outside any family: revoked %v, %v", r.Revoked(), err)
	}
	for _, h := range [][]byte{{1}, {3}} {
		if rt, err := st.RefreshToken(ctx, h); err != nil || rt.RevokedAt.IsZero() {
			t.Fatalf("refresh token %x after revocation: %+v, %v", h, rt, err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := p.DownTo(ctx, 11); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM receipts WHERE revoked_at = 0 AND family_id != ''`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("after migrating down, %d receipts of revoked families are not revoked", left)
	}
}

// A database a newer custos migrated is refused, not written to.
func TestNewerSchemaRefused(t *testing.T) {
	ctx := t.Context()
	path, db, p := migratedTo(t, 1)
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	srcs := p.ListSources()
	future := srcs[len(srcs)-1].Version + 1
	if _, err := db.ExecContext(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, 1)`, future); err != nil {
		t.Fatal(err)
	}
	st, err := OpenFile(ctx, path)
	if err == nil {
		st.Close()
		t.Fatal("opened a database at a schema version newer than this custos knows")
	}
	if !strings.Contains(err.Error(), "newer than this custos knows") {
		t.Fatalf("opening a newer database: %v", err)
	}
}

// TestMigrateDownKeepsLogFiles refuses to migrate below 15 once entries are
// in segment files, and migrates down a log that has none.
func TestMigrateDownKeepsLogFiles(t *testing.T) {
	ctx := t.Context()
	path, _, p := migratedTo(t, 15)
	st, err := OpenFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.InitLog(ctx, "example.com/audit"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendChunk(ctx, 10, entries(0, 10, 100)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := p.DownTo(ctx, 14); err != nil {
		t.Fatalf("migrating down a log with no segments: %v", err)
	}
	if _, err := p.UpTo(ctx, 15); err != nil {
		t.Fatal(err)
	}
	st, err = OpenFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendChunk(ctx, 600, entries(10, 600, 100)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := p.DownTo(ctx, 14); err == nil || !strings.Contains(err.Error(), "would lose them") {
		t.Fatalf("migrating down a log with entries in segments: %v", err)
	}
}
