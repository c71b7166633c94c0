package tlog

import (
	"fmt"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store"
)

// tileHeight is the number of tree levels one tile spans (C2SP tlog-tiles).
const tileHeight = 8

// tileWidth is the number of hashes in a full tile's bottom row.
const tileWidth = 1 << tileHeight

// tile is a hash tile with its interior rows: rows[0] is the bottom row (the
// hashes the tlog-tiles API serves), rows[k] the complete nodes k levels up.
// rows[k] has len(rows[0])>>k hashes.
type tile struct {
	level uint8
	index uint64
	rows  [tileHeight][]auditlog.Hash
	// stored is the width the store holds: parts over it need no rewrite.
	stored int
}

func (t *tile) width() int { return len(t.rows[0]) }

// newTile returns an empty tile with room for all its rows.
func newTile(level uint8, index uint64) *tile {
	t := &tile{level: level, index: index}
	for k := range tileHeight {
		t.rows[k] = make([]auditlog.Hash, 0, tileWidth>>k)
	}
	return t
}

// set stores the hash of the node sub levels above the tile's bottom at
// position pos of that row. Nodes arrive left to right, bottom-up, so pos
// is always the row's next slot.
func (t *tile) set(sub int, pos uint64, h auditlog.Hash) error {
	row := t.rows[sub]
	if uint64(len(row)) != pos {
		return fmt.Errorf("tile %d/%d: node %d of row %d arrives out of order (row has %d)", t.level, t.index, pos, sub, len(row))
	}
	t.rows[sub] = append(row, h)
	return nil
}

// changed returns the tile's parts that changed since it was stored.
func (t *tile) changed() ([]store.TilePart, error) {
	return store.SplitTile(t.record(), t.stored)
}

// record encodes the tile: its rows bottom-up.
func (t *tile) record() store.Tile {
	n := 0
	for _, r := range t.rows {
		n += len(r)
	}
	data := make([]byte, 0, n*len(auditlog.Hash{}))
	for _, r := range t.rows {
		for _, h := range r {
			data = append(data, h[:]...)
		}
	}
	return store.Tile{Level: t.level, Index: t.index, Width: t.width(), Data: data}
}

// parseTile decodes a stored tile, checking its shape and, when verify is
// set, that every interior node is the hash of its children.
func parseTile(rec store.Tile, verify bool) (*tile, error) {
	w := rec.Width
	if w < 1 || w > tileWidth {
		return nil, fmt.Errorf("tile %d/%d: bad width %d", rec.Level, rec.Index, w)
	}
	want := 0
	for k := range tileHeight {
		want += w >> k
	}
	if len(rec.Data) != want*len(auditlog.Hash{}) {
		return nil, fmt.Errorf("tile %d/%d: %d bytes for width %d, want %d", rec.Level, rec.Index, len(rec.Data), w, want*32)
	}
	t := newTile(rec.Level, rec.Index)
	off := 0
	for k := range tileHeight {
		row := t.rows[k][:w>>k]
		for i := range row {
			copy(row[i][:], rec.Data[off:])
			off += len(auditlog.Hash{})
		}
		t.rows[k] = row
	}
	if verify {
		for k := 1; k < tileHeight; k++ {
			for i, h := range t.rows[k] {
				if auditlog.NodeHash(t.rows[k-1][2*i], t.rows[k-1][2*i+1]) != h {
					return nil, fmt.Errorf("tile %d/%d: interior node %d of row %d does not match its children", rec.Level, rec.Index, i, k)
				}
			}
		}
	}
	return t, nil
}

// locate returns where a tree node lives: the tile's level and index, the
// row within the tile and the position in that row. Nodes at heights that
// are multiples of 8 are in the bottom row of the tile one level up.
func locate(height uint, index uint64) (level uint8, tileIndex uint64, sub int, pos uint64) {
	level = uint8(height / tileHeight)
	sub = int(height % tileHeight)
	shift := uint(tileHeight - sub)
	return level, index >> shift, sub, index & (1<<shift - 1)
}
