package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"

	"github.com/pressly/goose/v3"

	"github.com/custos-dev/custos/internal/store"
)

// Tiles are stored as parts (store.TilePart), one row each in
// log_tile_parts, keyed by level << 59 | index << 4 | part: a rowid lookup,
// with a tile's parts next to each other. A tree of under 2^63 entries has
// level-0 tile indexes below 2^55.
func partID(level uint8, index uint64, part uint8) int64 {
	return int64(level)<<59 | int64(index)<<4 | int64(part)
}

const qPutTilePart = `INSERT INTO log_tile_parts (id, width, data) VALUES (?, ?, ?)
	ON CONFLICT (id) DO UPDATE SET width = excluded.width, data = excluded.data WHERE excluded.width >= log_tile_parts.width`

func (s *Store) putTileParts(ctx context.Context, tx *sql.Tx, parts []store.TilePart) error {
	for _, p := range parts {
		if p.Part > store.TopPart {
			return fmt.Errorf("tile %d/%d: no part %d", p.Level, p.Index, p.Part)
		}
		if _, err := s.exec(ctx, tx, qPutTilePart, partID(p.Level, p.Index, p.Part), p.Width, p.Data); err != nil {
			return err
		}
	}
	return nil
}

// PutTiles stores tile parts ahead of the integration step that covers
// them, keeping the widest version of each. Parts beyond the integrated tree
// are harmless: readers take from a tile only what a checkpoint covers.
// The parts are durable once that integration step is (its commit syncs
// the WAL up to it); a crash before then loses nothing the log cannot
// derive again from its entries.
func (s *Store) PutTiles(ctx context.Context, parts []store.TilePart) error {
	rest, err := s.putFullTiles(ctx, parts)
	if err != nil || len(rest) == 0 {
		return err
	}
	return s.writeLazy(ctx, func(ctx context.Context, tx *sql.Tx) error { return s.putTileParts(ctx, tx, rest) })
}

// TileParts returns the stored parts of the tile at level, index whose
// numbers are in the bit set parts, in order of part number.
func (s *Store) TileParts(ctx context.Context, level uint8, index uint64, parts uint16) ([]store.TilePart, error) {
	parts &= store.AllParts
	if parts == 0 {
		return nil, nil
	}
	if level == 0 {
		if ps, ok, err := s.fileTileParts(ctx, index, parts); err != nil || ok {
			return ps, err
		}
	}
	ps, err := s.dbTileParts(ctx, level, index, parts)
	if err == nil && len(ps) == 0 && level == 0 {
		return s.checkedFileTileParts(ctx, index, parts)
	}
	return ps, err
}

func (s *Store) dbTileParts(ctx context.Context, level uint8, index uint64, parts uint16) ([]store.TilePart, error) {
	// A point read for one or two parts (an inclusion proof's), a range
	// read otherwise. At most nine small rows: not worth a cancellable
	// context, which costs the driver a goroutine per query.
	ctx = context.WithoutCancel(ctx)
	var rows *sql.Rows
	var err error
	lo, hi := uint8(bits.TrailingZeros16(parts)), uint8(15-bits.LeadingZeros16(parts))
	switch bits.OnesCount16(parts) {
	case 1:
		p := store.TilePart{Level: level, Index: index, Part: lo}
		err := s.queryRow(ctx, `SELECT width, data FROM log_tile_parts WHERE id = ?`, partID(level, index, lo)).Scan(&p.Width, &p.Data)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []store.TilePart{p}, nil
	case 2:
		rows, err = s.query(ctx, `SELECT id, width, data FROM log_tile_parts WHERE id IN (?, ?) ORDER BY id`,
			partID(level, index, lo), partID(level, index, hi))
	default:
		rows, err = s.query(ctx, `SELECT id, width, data FROM log_tile_parts WHERE id BETWEEN ? AND ? ORDER BY id`,
			partID(level, index, lo), partID(level, index, hi))
	}
	if err != nil {
		return nil, err
	}
	return scanParts(rows, level, index, parts)
}

// scanParts reads tile parts from rows of (id, width, data), keeping those
// in the bit set parts, and closes rows.
func scanParts(rows *sql.Rows, level uint8, index uint64, parts uint16) ([]store.TilePart, error) {
	defer rows.Close()
	var out []store.TilePart
	for rows.Next() {
		p := store.TilePart{Level: level, Index: index}
		var id int64
		if err := rows.Scan(&id, &p.Width, &p.Data); err != nil {
			return nil, err
		}
		p.Part = uint8(id & 0xf)
		if parts&(1<<p.Part) != 0 {
			out = append(out, p)
		}
	}
	return out, rows.Err()
}

// splitTiles moves tiles stored whole (log_tiles, before migration 6) into
// parts, a few at a time.
var splitTiles = goose.NewGoMigration(6, &goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `CREATE TABLE log_tile_parts (
		id    INTEGER PRIMARY KEY,
		width INTEGER NOT NULL,
		data  BLOB NOT NULL
	) STRICT`); err != nil {
		return err
	}
	for after := int64(-1); ; {
		tiles, last, err := readOldTiles(ctx, tx, after)
		if err != nil || len(tiles) == 0 {
			if err == nil {
				_, err = tx.ExecContext(ctx, `DROP TABLE log_tiles`)
			}
			return err
		}
		for _, t := range tiles {
			parts, err := store.SplitTile(t, 0)
			if err != nil {
				return fmt.Errorf("migrate tile %d/%d: %w", t.Level, t.Index, err)
			}
			for _, p := range parts {
				if _, err := tx.ExecContext(ctx, `INSERT INTO log_tile_parts (id, width, data) VALUES (?, ?, ?)`,
					partID(p.Level, p.Index, p.Part), p.Width, p.Data); err != nil {
					return err
				}
			}
		}
		after = last
	}
}}, &goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `CREATE TABLE log_tiles (
		id    INTEGER PRIMARY KEY,
		width INTEGER NOT NULL,
		data  BLOB NOT NULL
	) STRICT`); err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, `SELECT DISTINCT id >> 4 FROM log_tile_parts ORDER BY 1`)
	if err != nil {
		return err
	}
	var keys []int64
	for rows.Next() {
		var k int64
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return err
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, k := range keys {
		level, index := uint8(k>>55), uint64(k)&(1<<55-1)
		t, err := store.ReadTile(ctx, txParts{tx}, level, index)
		if err != nil {
			return fmt.Errorf("migrate tile %d/%d back: %w", level, index, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO log_tiles (id, width, data) VALUES (?, ?, ?)`,
			int64(level)<<56|int64(index), t.Width, t.Data); err != nil {
			return err
		}
	}
	_, err = tx.ExecContext(ctx, `DROP TABLE log_tile_parts`)
	return err
}})

// readOldTiles reads up to 64 whole tiles with ids after after.
func readOldTiles(ctx context.Context, tx *sql.Tx, after int64) ([]store.Tile, int64, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, width, data FROM log_tiles WHERE id > ? ORDER BY id LIMIT 64`, after)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var tiles []store.Tile
	last := after
	for rows.Next() {
		var t store.Tile
		if err := rows.Scan(&last, &t.Width, &t.Data); err != nil {
			return nil, 0, err
		}
		t.Level, t.Index = uint8(last>>56), uint64(last)&(1<<56-1)
		tiles = append(tiles, t)
	}
	return tiles, last, rows.Err()
}

// txParts reads tile parts in a migration's transaction.
type txParts struct{ tx *sql.Tx }

func (r txParts) TileParts(ctx context.Context, level uint8, index uint64, parts uint16) ([]store.TilePart, error) {
	rows, err := r.tx.QueryContext(ctx, `SELECT id, width, data FROM log_tile_parts WHERE id BETWEEN ? AND ? ORDER BY id`,
		partID(level, index, 0), partID(level, index, store.TopPart))
	if err != nil {
		return nil, err
	}
	return scanParts(rows, level, index, parts)
}
