package store

import (
	"context"
	"errors"
	"fmt"
)

// ErrBadTile means a tile's stored parts do not fit together.
var ErrBadTile = errors.New("malformed tile")

// Tile geometry (c2sp.org/tlog-tiles), and how a tile is stored.
//
// A tile is stored as up to nine parts, so that an inclusion proof reads
// one row of a few kilobytes rather than a whole tile with its interior rows
// (16 KiB):
//
//   - bottom parts 0–7: part p holds the tile's nodes over the bottom-row
//     positions [32p, 32p+32), that is the five rows of a 32-wide subtree
//     (up to 32, 16, 8, 4 and 2 hashes), followed by a copy of the tile's
//     top rows as they were when the part was written;
//   - the top part (TopPart) holds the tile's three upper rows, whose
//     nodes span bottom parts: up to 8, 4 and 2 hashes.
//
// A part's Width is its bottom row's length: 1–32 for a bottom part, 1–8
// (the tile's width / 32) for the top part. A part's Data holds its rows
// bottom-up, each row the complete nodes over the row below, 32 bytes each;
// the length of a bottom part's top copy tells its width (0–8). A bottom
// part's node over positions [i·2^k, (i+1)·2^k) of its subtree is in its
// row k at i. Parts only grow: a tile's parts are rewritten, widest wins,
// as the tree grows, and whenever the top rows grow every bottom part is
// rewritten with the new copy, so a proof finds the upper nodes it needs in
// the bottom part it reads. The top part is what whole tiles are rebuilt
// from.
const (
	TileHeight = 8
	TileWidth  = 1 << TileHeight
	HashSize   = 32

	// partHeight is the number of rows in a bottom part.
	partHeight = 5
	partWidth  = 1 << partHeight
	// TopPart is the top part's number.
	TopPart = TileWidth / partWidth
	// AllParts selects every part of a tile in TileParts.
	AllParts = 1<<(TopPart+1) - 1
)

// TilePart is one stored part of a tile.
type TilePart struct {
	Level uint8
	Index uint64
	Part  uint8
	Width int
	Data  []byte
}

// rowsSize returns the hashes in rows [0, n) over a bottom row of width w.
func rowsSize(w, n int) int {
	total := 0
	for k := range n {
		total += w >> k
	}
	return total
}

// NodePart returns the part of a tile that holds the node sub rows above the
// tile's bottom, at position pos of that row.
func NodePart(sub int, pos uint64) uint8 {
	if sub >= partHeight {
		return TopPart
	}
	return uint8(pos >> (partHeight - sub))
}

// topWidth returns the width of the top rows held in n hashes, and false if
// no width fits.
func topWidth(n int) (int, bool) {
	for w := range TileWidth/partWidth + 1 {
		if rowsSize(w, TileHeight-partHeight) == n {
			return w, true
		}
	}
	return 0, false
}

// Node returns the hash in part p of the node sub rows above the tile's
// bottom at position pos of that row, and false if the part does not hold
// it: it is in another part, or not yet complete when the part was written.
// A bottom part holds the nodes of its subtree and, in its copy of the top
// rows, the upper ones.
func (p TilePart) Node(sub int, pos uint64) ([HashSize]byte, bool) {
	var h [HashSize]byte
	if sub < 0 || sub >= TileHeight || pos >= TileWidth>>sub || p.Width < 1 || !validPart(p) {
		return h, false
	}
	var row, off int
	local := pos
	switch {
	case sub >= partHeight && p.Part == TopPart:
		row = sub - partHeight
	case sub >= partHeight:
		// The bottom part's copy of the top rows.
		row, off = sub-partHeight, rowsSize(p.Width, partHeight)
		tw, _ := topWidth(len(p.Data)/HashSize - off)
		if local >= uint64(tw>>row) {
			return h, false
		}
		off += rowsSize(tw, row)
	case NodePart(sub, pos) == p.Part:
		row, local = sub, pos&(1<<(partHeight-sub)-1)
	default:
		return h, false
	}
	if sub < partHeight || p.Part == TopPart {
		if local >= uint64(p.Width>>row) {
			return h, false
		}
		off = rowsSize(p.Width, row)
	}
	i := (off + int(local)) * HashSize
	copy(h[:], p.Data[i:])
	return h, true
}

// validPart reports whether p's width and size agree.
func validPart(p TilePart) bool {
	if p.Part > TopPart || p.Width < 1 || len(p.Data)%HashSize != 0 {
		return false
	}
	n := len(p.Data) / HashSize
	if p.Part == TopPart {
		return p.Width <= TileWidth/partWidth && n == rowsSize(p.Width, TileHeight-partHeight)
	}
	_, ok := topWidth(n - rowsSize(p.Width, partHeight))
	return p.Width <= partWidth && ok
}

// SplitTile returns the parts of tile t that differ from the same tile at
// width from (0 for all of them): the bottom parts over [from, t.Width),
// or all of them if the top rows grew, and then the top part.
func SplitTile(t Tile, from int) ([]TilePart, error) {
	w := t.Width
	if w < 1 || w > TileWidth || from < 0 || from > w || len(t.Data) != rowsSize(w, TileHeight)*HashSize {
		return nil, fmt.Errorf("tile %d/%d: bad tile (width %d, %d bytes)", t.Level, t.Index, w, len(t.Data))
	}
	tw := w / partWidth
	topGrew := tw != from/partWidth
	top := t.Data[rowsSize(w, partHeight)*HashSize:]
	if topGrew {
		from = 0
	}
	var parts []TilePart
	for p := from / partWidth; p*partWidth < w; p++ {
		pw := min(partWidth, w-p*partWidth)
		data := make([]byte, 0, (rowsSize(pw, partHeight)+rowsSize(tw, TileHeight-partHeight))*HashSize)
		for k := range partHeight {
			start := rowsSize(w, k) + p*partWidth>>k
			data = append(data, t.Data[start*HashSize:(start+pw>>k)*HashSize]...)
		}
		data = append(data, top...)
		parts = append(parts, TilePart{Level: t.Level, Index: t.Index, Part: uint8(p), Width: pw, Data: data})
	}
	if tw > 0 && topGrew {
		parts = append(parts, TilePart{Level: t.Level, Index: t.Index, Part: TopPart, Width: tw, Data: append([]byte(nil), top...)})
	}
	return parts, nil
}

// JoinTile rebuilds a tile from its stored parts (in any order). The tile's
// width is that of its bottom parts, which must run from part 0 with every
// part but the last full; parts wider than the rest (stored ahead of an
// integration) are cut back to it.
func JoinTile(level uint8, index uint64, parts []TilePart) (Tile, error) {
	t := Tile{Level: level, Index: index}
	var byNum [TopPart + 1]*TilePart
	for i := range parts {
		p := &parts[i]
		if p.Level != level || p.Index != index || !validPart(*p) || byNum[p.Part] != nil {
			return t, fmt.Errorf("tile %d/%d: part %d: %w", level, index, p.Part, ErrBadTile)
		}
		byNum[p.Part] = p
	}
	w := 0
	for p := 0; p < TopPart && byNum[p] != nil; p++ {
		w += byNum[p].Width
		if byNum[p].Width < partWidth {
			break
		}
	}
	if w == 0 {
		return t, fmt.Errorf("tile %d/%d: %w", level, index, ErrNotFound)
	}
	tw := w / partWidth
	top := byNum[TopPart]
	if tw > 0 && (top == nil || top.Width < tw) {
		return t, fmt.Errorf("tile %d/%d: top part narrower than the tile's width %d: %w", level, index, w, ErrBadTile)
	}
	data := make([]byte, 0, rowsSize(w, TileHeight)*HashSize)
	for k := range partHeight {
		for p := 0; p*partWidth < w; p++ {
			part := byNum[p]
			n := min(partWidth, w-p*partWidth) >> k
			start := rowsSize(part.Width, k) * HashSize
			data = append(data, part.Data[start:start+n*HashSize]...)
		}
	}
	for r := 0; tw > 0 && r < TileHeight-partHeight; r++ {
		start := rowsSize(top.Width, r) * HashSize
		data = append(data, top.Data[start:start+(tw>>r)*HashSize]...)
	}
	t.Width, t.Data = w, data
	return t, nil
}

// TilePartReader reads stored tile parts.
type TilePartReader interface {
	// TileParts returns the stored parts of the tile at level, index
	// whose numbers are in the bit set parts (bit p for part p), in
	// order. Parts never stored are missing.
	TileParts(ctx context.Context, level uint8, index uint64, parts uint16) ([]TilePart, error)
}

// ReadTile reads a whole tile, or fails with ErrNotFound.
func ReadTile(ctx context.Context, r TilePartReader, level uint8, index uint64) (Tile, error) {
	parts, err := r.TileParts(ctx, level, index, AllParts)
	if err != nil {
		return Tile{Level: level, Index: index}, err
	}
	return JoinTile(level, index, parts)
}
