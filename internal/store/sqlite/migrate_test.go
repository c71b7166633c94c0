package sqlite

import (
	"bytes"
	"database/sql"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/pressly/goose/v3"

	"github.com/custos-dev/custos/internal/store"
)

// TestMigrateTilesToParts builds a database as migration 5 left it, with
// whole tiles, and checks that opening it moves every tile into parts that
// read back the same, and that migrating down restores the whole tiles.
func TestMigrateTilesToParts(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), FileName)
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys, goose.WithDisableGlobalRegistry(true), goose.WithGoMigrations(splitTiles))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 5); err != nil {
		t.Fatal(err)
	}

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
