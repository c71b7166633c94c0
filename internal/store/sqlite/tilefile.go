package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/durable"
	"github.com/custos-dev/custos/internal/store"
)

// The tile file.
//
// Full tiles at level 0, which are nearly all of a tree's hashes, are not
// stored in the database but in one file beside it (custos.db-tiles), at
// fixed places: level-0 tile i, from the log's tiles_from on, is the
// fullTileBytes at (i - tiles_from) · fullTileBytes, its eight bottom parts
// then its top part, exactly as store.SplitTile cuts a full tile. A full
// tile never changes (a retry writes the same bytes again), so it is
// written in place, and the file is synced before the integration step
// that covers its tiles is committed; that commit deletes the tiles'
// growing versions from the database. The file is read for tiles wholly inside the integrated tree;
// beyond it, a crash may have left a tile unwritten or torn (the log writes
// it again when it integrates those entries again), so such a tile is read
// from the database, or from the file only if its hashes check out.
const (
	// TilesSuffix names the tile file: the database file's path with
	// this suffix.
	TilesSuffix = "-tiles"

	fullPartBytes = (32 + 16 + 8 + 4 + 2 + topHashes) * store.HashSize
	fullTopBytes  = topHashes * store.HashSize
	fullTileBytes = store.TopPart*fullPartBytes + fullTopBytes
	topHashes     = 8 + 4 + 2
)

// tileFile is a Store's tile file.
type tileFile struct {
	path string

	mu     sync.Mutex
	f      *os.File // opened on first use; nil until then
	closed bool

	// from is the log's tiles_from, and integrated the largest integrated
	// size seen; both -1 until read.
	from       atomic.Int64
	integrated atomic.Int64

	// full holds the level-0 tiles written to the file whose growing
	// versions are still in the database.
	fmu  sync.Mutex
	full []uint64
}

func newTileFile(path string) *tileFile {
	t := &tileFile{path: path}
	t.from.Store(-1)
	t.integrated.Store(-1)
	return t
}

// file returns the open tile file, opening it (creating it if create) on
// first use; nil if it does not exist and create is false.
func (t *tileFile) file(create bool) (*os.File, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	if t.f != nil {
		return t.f, nil
	}
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(t.path, flag, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err == nil {
		// Whoever created the file, its directory entry is durable before
		// this process relies on a tile in it.
		if err = durable.SyncDir(filepath.Dir(t.path)); err != nil {
			f.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("audit log: tile file: %w", err)
	}
	t.f = f
	return f, nil
}

func (t *tileFile) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	if t.f == nil {
		return nil
	}
	err := t.f.Close()
	t.f = nil
	return err
}

// tileState returns the log's tiles_from and an integrated size, reading them
// from the database if a tile at index might be integrated by now.
func (s *Store) tileState(ctx context.Context, index uint64) (from, integrated int64, err error) {
	t := s.tiles
	from, integrated = t.from.Load(), t.integrated.Load()
	if from >= 0 && uint64(integrated) >= (index+1)*store.TileWidth {
		return from, integrated, nil
	}
	err = s.queryRow(ctx, `SELECT tiles_from, integrated FROM log_state WHERE id = 1`).Scan(&from, &integrated)
	if errors.Is(err, sql.ErrNoRows) {
		return -1, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	t.from.Store(from)
	t.sawIntegrated(integrated)
	return from, integrated, nil
}

func (t *tileFile) sawIntegrated(n int64) {
	for {
		old := t.integrated.Load()
		if n <= old || t.integrated.CompareAndSwap(old, n) {
			return
		}
	}
}

// fullTile returns the parts of parts that make up a whole level-0 tile the
// tile file holds (index ≥ tiles_from), in file order, or nil.
func (s *Store) fullTile(ctx context.Context, parts []store.TilePart) ([]store.TilePart, error) {
	if len(parts) != store.TopPart+1 || parts[0].Level != 0 {
		return nil, nil
	}
	from := s.tiles.from.Load()
	if from < 0 {
		var err error
		if from, _, err = s.tileState(ctx, parts[0].Index); err != nil || from < 0 {
			return nil, err
		}
	}
	if parts[0].Index < uint64(from) {
		return nil, nil
	}
	for i, p := range parts {
		size, width := fullPartBytes, 32
		if i == store.TopPart {
			size, width = fullTopBytes, store.TopPart
		}
		if p.Level != 0 || p.Index != parts[0].Index || int(p.Part) != i || p.Width != width || len(p.Data) != size {
			return nil, nil
		}
	}
	return parts, nil
}

// putFullTiles writes the whole level-0 tiles among parts to the tile file,
// syncs it, and returns the other parts. It runs in its caller's goroutine,
// not the writer's: a sync of many tiles takes long enough to hold up every
// commit behind it.
func (s *Store) putFullTiles(ctx context.Context, parts []store.TilePart) ([]store.TilePart, error) {
	var rest []store.TilePart
	var written []uint64
	var buf []byte
	for len(parts) > 0 {
		n := 1
		for n < len(parts) && parts[n].Level == parts[0].Level && parts[n].Index == parts[0].Index {
			n++
		}
		tile, err := s.fullTile(ctx, parts[:n])
		if err != nil {
			return nil, err
		}
		if tile == nil {
			rest = append(rest, parts[:n]...)
			parts = parts[n:]
			continue
		}
		f, err := s.tiles.file(true)
		if err != nil {
			return nil, err
		}
		buf = buf[:0]
		for _, p := range tile {
			buf = append(buf, p.Data...)
		}
		index := tile[0].Index
		if _, err := f.WriteAt(buf, int64(index-uint64(s.tiles.from.Load()))*fullTileBytes); err != nil {
			return nil, fmt.Errorf("audit log: tile file: %w", err)
		}
		written = append(written, index)
		parts = parts[n:]
	}
	if len(written) > 0 {
		f, err := s.tiles.file(true)
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			return nil, fmt.Errorf("audit log: tile file: %w", err)
		}
		s.tiles.fmu.Lock()
		s.tiles.full = append(s.tiles.full, written...)
		s.tiles.fmu.Unlock()
	}
	return rest, nil
}

// takeFull returns the tiles the tile file durably holds whose growing
// versions may still be in the database.
func (t *tileFile) takeFull() []uint64 {
	t.fmu.Lock()
	defer t.fmu.Unlock()
	full := t.full
	t.full = nil
	return full
}

// returnFull puts back tiles takeFull returned, after a failed delete.
func (t *tileFile) returnFull(full []uint64) {
	t.fmu.Lock()
	defer t.fmu.Unlock()
	t.full = append(t.full, full...)
}

// deleteGrowing deletes from the database the growing versions of tiles
// the tile file now holds.
func deleteGrowing(ctx context.Context, tx *sql.Tx, full []uint64) error {
	for _, i := range full {
		if _, err := tx.ExecContext(ctx, `DELETE FROM log_tile_parts WHERE id BETWEEN ? AND ?`,
			partID(0, i, 0), partID(0, i, store.TopPart)); err != nil {
			return err
		}
	}
	return nil
}

// fileTileParts reads the parts (a bit set) of level-0 tile index from the
// tile file, if the tile is wholly integrated. It reports false if the file
// does not hold the tile.
func (s *Store) fileTileParts(ctx context.Context, index uint64, parts uint16) ([]store.TilePart, bool, error) {
	from, integrated, err := s.tileState(ctx, index)
	if err != nil || from < 0 || index < uint64(from) || uint64(integrated) < (index+1)*store.TileWidth {
		return nil, false, err
	}
	return s.readFileTile(index, uint64(from), parts)
}

// checkedFileTileParts reads the parts of level-0 tile index from the tile
// file whatever the integrated size, having checked that the whole tile is
// there and its hashes agree with each other. It is for a tile partly
// beyond the integrated tree whose growing version the database no longer
// holds (the tree was cut back, or restored): a crash may have left such a
// tile torn.
func (s *Store) checkedFileTileParts(ctx context.Context, index uint64, parts uint16) ([]store.TilePart, error) {
	from, _, err := s.tileState(ctx, index)
	if err != nil || from < 0 || index < uint64(from) {
		return nil, err
	}
	all, ok, err := s.readFileTile(index, uint64(from), store.AllParts)
	if err != nil || !ok || !consistentTile(all) {
		return nil, err
	}
	var out []store.TilePart
	for _, p := range all {
		if parts&(1<<p.Part) != 0 {
			out = append(out, p)
		}
	}
	return out, nil
}

// consistentTile reports whether a full tile's parts agree: every interior
// node is the hash of its children, and every copy of the top rows is the
// top part's.
func consistentTile(parts []store.TilePart) bool {
	t, err := store.JoinTile(0, parts[0].Index, parts)
	if err != nil || t.Width != store.TileWidth {
		return false
	}
	row, below := store.TileWidth, t.Data
	for k := 1; k < store.TileHeight; k++ {
		above := below[row*store.HashSize:]
		for i := range row / 2 {
			l := auditlog.Hash(below[2*i*store.HashSize:])
			r := auditlog.Hash(below[(2*i+1)*store.HashSize:])
			if h := auditlog.NodeHash(l, r); !bytes.Equal(h[:], above[i*store.HashSize:(i+1)*store.HashSize]) {
				return false
			}
		}
		row, below = row/2, above
	}
	again, err := store.SplitTile(t, 0)
	if err != nil || len(again) != len(parts) {
		return false
	}
	for i := range again {
		if !bytes.Equal(again[i].Data, parts[i].Data) {
			return false
		}
	}
	return true
}

// readFileTile reads the parts (a bit set) of level-0 tile index, stored
// in the tile file from tile from on. It reports false if the file does not
// hold them.
func (s *Store) readFileTile(index, from uint64, parts uint16) ([]store.TilePart, bool, error) {
	f, err := s.tiles.file(false)
	if err != nil || f == nil {
		return nil, false, err
	}
	lo, hi := -1, 0
	for p := range store.TopPart + 1 {
		if parts&(1<<p) != 0 {
			if lo < 0 {
				lo = p
			}
			hi = p
		}
	}
	if lo < 0 {
		return nil, true, nil
	}
	end := (hi + 1) * fullPartBytes
	if hi == store.TopPart {
		end = fullTileBytes
	}
	buf := make([]byte, end-lo*fullPartBytes)
	if _, err := f.ReadAt(buf, int64(index-from)*fullTileBytes+int64(lo*fullPartBytes)); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("audit log: tile file: %w", err)
	}
	var out []store.TilePart
	for p := lo; p <= hi; p++ {
		if parts&(1<<p) == 0 {
			continue
		}
		size, width := fullPartBytes, 32
		if p == store.TopPart {
			size, width = fullTopBytes, store.TopPart
		}
		data := buf[(p-lo)*fullPartBytes:][:size]
		if allZero(data) {
			return nil, false, nil // a hole: never written
		}
		out = append(out, store.TilePart{Level: 0, Index: index, Part: uint8(p), Width: width, Data: data})
	}
	return out, true, nil
}

var zeroPart [fullPartBytes]byte

// allZero reports whether b, at most fullPartBytes long, is all zeros.
func allZero(b []byte) bool { return bytes.Equal(b, zeroPart[:len(b)]) }
