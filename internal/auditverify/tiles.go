package auditverify

import (
	"errors"
	"fmt"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store"
)

// Tile geometry (c2sp.org/tlog-tiles; the store keeps interior rows too,
// see store.Tile).
const (
	tileHeight = 8
	tileWidth  = 1 << tileHeight
	// maxLevels covers trees of up to 2^64 entries.
	maxLevels = 64/tileHeight + 1
)

// tileView is the stored tile the stream is in at one level.
type tileView struct {
	index int64 // -1 before the first
	width int
	data  []byte // rows bottom-up, as stored; nil if missing or malformed
	rowAt [tileHeight]int
}

// badTiles remembers, per level, the last tile reported (its index + 1).
type badTiles [maxLevels]int64

// tileNode returns the stored hash of the node at the given height and
// index, reading its tile if the stream just entered it. ok is false if
// the tile is missing, malformed or too narrow (a problem, reported once
// per tile).
func (r *run) tileNode(height uint8, index uint64) (h auditlog.Hash, ok bool, err error) {
	level := height / tileHeight
	sub := int(height % tileHeight)
	shift := uint(tileHeight - sub)
	tileIndex, pos := index>>shift, index&(1<<shift-1)
	t := &r.tiles[level]
	if t.index != int64(tileIndex) {
		if err := r.loadTile(t, level, tileIndex); err != nil {
			return h, false, err
		}
	}
	if t.data == nil {
		return h, false, nil
	}
	if pos >= uint64(t.width>>sub) {
		r.tileProblem(level, tileIndex, index<<(uint(height)), fmt.Sprintf("tile %d/%d has width %d, too narrow for the tree", level, tileIndex, t.width))
		return h, false, nil
	}
	off := (t.rowAt[sub] + int(pos)) * auditlog.HashSize
	copy(h[:], t.data[off:])
	return h, true, nil
}

func (r *run) loadTile(t *tileView, level uint8, index uint64) error {
	t.index, t.data, t.width = int64(index), nil, 0
	rec, err := store.ReadTile(r.ctx, r.st, level, index)
	if errors.Is(err, store.ErrNotFound) {
		r.tileProblem(level, index, index<<(tileHeight*uint(level)+tileHeight), fmt.Sprintf("tile %d/%d is missing", level, index))
		return nil
	}
	if errors.Is(err, store.ErrBadTile) {
		r.tileProblem(level, index, index<<(tileHeight*uint(level)+tileHeight), err.Error())
		return nil
	}
	if err != nil {
		return fmt.Errorf("auditverify: read tile %d/%d: %w", level, index, err)
	}
	w := rec.Width
	want := 0
	for k := range tileHeight {
		t.rowAt[k] = want
		want += w >> k
	}
	if w < 1 || w > tileWidth || len(rec.Data) != want*auditlog.HashSize {
		r.tileProblem(level, index, index<<(tileHeight*uint(level)+tileHeight), fmt.Sprintf("tile %d/%d is malformed (width %d, %d bytes)", level, index, w, len(rec.Data)))
		return nil
	}
	t.width, t.data = w, rec.Data
	return nil
}

// tileProblem reports a bad tile, over the entries under it from firstLeaf.
func (r *run) tileProblem(level uint8, index, firstLeaf uint64, detail string) {
	r.tileProblemRange(level, index, firstLeaf, firstLeaf+1<<(tileHeight*uint(level)+tileHeight)-1, detail)
}

// tileProblemRange reports a bad tile, over entries [first, last].
func (r *run) tileProblemRange(level uint8, index, first, last uint64, detail string) {
	// One problem per tile.
	if r.badTile[level] == int64(index)+1 {
		return
	}
	r.badTile[level] = int64(index) + 1
	if r.size > 0 {
		last = min(last, r.size-1)
	}
	r.add(Problem{Kind: KindTileMismatch, FirstIndex: min(first, last), LastIndex: last, Detail: detail}, false)
}

// checkNode compares an interior node the tree just completed with the
// stored tiles.
func (r *run) checkNode(height uint8, index uint64, h auditlog.Hash) error {
	stored, ok, err := r.tileNode(height, index)
	if err != nil || !ok || stored == h {
		return err
	}
	level := height / tileHeight
	tileIndex := index >> uint(tileHeight-height%tileHeight)
	first := index << height
	r.tileProblemRange(level, tileIndex, first, first+1<<height-1,
		fmt.Sprintf("tile %d/%d holds a node (height %d, index %d, over entries %d–%d) that is not the hash of the entries under it",
			level, tileIndex, height, index, first, first+1<<height-1))
	return nil
}
