package store

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// testRows returns the rows of a full tile of distinct random hashes.
func testRows(seed uint64) [TileHeight][][HashSize]byte {
	r := rand.New(rand.NewPCG(seed, 1))
	var rows [TileHeight][][HashSize]byte
	for k := range rows {
		rows[k] = make([][HashSize]byte, TileWidth>>k)
		for i := range rows[k] {
			for j := range rows[k][i] {
				rows[k][i][j] = byte(r.Uint32())
			}
		}
	}
	return rows
}

// tileAt returns the tile of the given rows at width w.
func tileAt(rows [TileHeight][][HashSize]byte, w int) Tile {
	t := Tile{Level: 1, Index: 7, Width: w}
	for k := range rows {
		for _, h := range rows[k][:w>>k] {
			t.Data = append(t.Data, h[:]...)
		}
	}
	return t
}

func TestSplitJoinTile(t *testing.T) {
	rows := testRows(1)
	for w := 1; w <= TileWidth; w++ {
		tile := tileAt(rows, w)
		parts, err := SplitTile(tile, 0)
		if err != nil {
			t.Fatalf("width %d: %v", w, err)
		}
		if want := (w+partWidth-1)/partWidth + min(1, w/partWidth); len(parts) != want {
			t.Fatalf("width %d: %d parts, want %d", w, len(parts), want)
		}
		got, err := JoinTile(tile.Level, tile.Index, parts)
		if err != nil {
			t.Fatalf("width %d: join: %v", w, err)
		}
		if got.Width != w || !bytes.Equal(got.Data, tile.Data) {
			t.Fatalf("width %d: joined tile differs (width %d)", w, got.Width)
		}
		// Every node is found in the part NodePart names; upper nodes are
		// also in every bottom part's copy of the top rows; lower nodes
		// are only in their own part.
		byNum := map[uint8]TilePart{}
		for _, p := range parts {
			byNum[p.Part] = p
		}
		for k := range TileHeight {
			for i := range w >> k {
				p := NodePart(k, uint64(i))
				h, ok := byNum[p].Node(k, uint64(i))
				if !ok || h != rows[k][i] {
					t.Fatalf("width %d: node %d/%d not found in part %d", w, k, i, p)
				}
				for _, other := range parts {
					h, ok := other.Node(k, uint64(i))
					switch {
					case k >= partHeight && (!ok || h != rows[k][i]):
						t.Fatalf("width %d: upper node %d/%d not in part %d", w, k, i, other.Part)
					case k < partHeight && ok && other.Part != p:
						t.Fatalf("width %d: node %d/%d also found in part %d", w, k, i, other.Part)
					}
				}
			}
			// The next node is not complete yet.
			if _, ok := byNum[NodePart(k, uint64(w>>k))].Node(k, uint64(w>>k)); ok {
				t.Fatalf("width %d: incomplete node %d/%d found", w, k, w>>k)
			}
		}
	}
}

// TestGrowTile stores a tile's parts as it grows, widest wins, as the log
// does, and reads it back at every width.
func TestGrowTile(t *testing.T) {
	rows := testRows(2)
	stored := map[uint8]TilePart{}
	r := rand.New(rand.NewPCG(3, 4))
	for w := 0; w < TileWidth; {
		next := min(TileWidth, w+1+r.IntN(40))
		parts, err := SplitTile(tileAt(rows, next), w)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range parts {
			if old, ok := stored[p.Part]; ok && old.Width > p.Width {
				t.Fatalf("width %d→%d: part %d shrinks from %d to %d", w, next, p.Part, old.Width, p.Width)
			}
			stored[p.Part] = p
		}
		w = next
		var all []TilePart
		for _, p := range stored {
			all = append(all, p)
			// Each stored part has the current top rows.
			for k := partHeight; k < TileHeight; k++ {
				for i := range w >> k {
					if h, ok := p.Node(k, uint64(i)); !ok || h != rows[k][i] {
						t.Fatalf("width %d: part %d lacks upper node %d/%d", w, p.Part, k, i)
					}
				}
			}
		}
		got, err := JoinTile(1, 7, all)
		if err != nil {
			t.Fatalf("width %d: %v", w, err)
		}
		if want := tileAt(rows, w); got.Width != w || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("width %d: joined tile has width %d or differs", w, got.Width)
		}
	}
}

func TestJoinTileRefusesMalformed(t *testing.T) {
	rows := testRows(5)
	parts, err := SplitTile(tileAt(rows, 100), 0) // parts 0–3 and the top
	if err != nil {
		t.Fatal(err)
	}
	if _, err := JoinTile(1, 7, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no parts: %v, want ErrNotFound", err)
	}
	cases := map[string]func([]TilePart) []TilePart{
		"short data":        func(ps []TilePart) []TilePart { ps[1].Data = ps[1].Data[:32]; return ps },
		"bad width":         func(ps []TilePart) []TilePart { ps[0].Width = 33; return ps },
		"other tile":        func(ps []TilePart) []TilePart { ps[2].Index = 8; return ps },
		"duplicate part":    func(ps []TilePart) []TilePart { return append(ps, ps[0]) },
		"no top":            func(ps []TilePart) []TilePart { return ps[:4] },
		"top too narrow":    func(ps []TilePart) []TilePart { ps[4] = mustSplit(t, tileAt(rows, 40), 0)[1]; return ps },
		"part out of range": func(ps []TilePart) []TilePart { ps[4].Part = TopPart + 1; return ps },
	}
	for name, mutate := range cases {
		ps := mutate(clone(parts))
		if _, err := JoinTile(1, 7, ps); err == nil {
			t.Errorf("%s: joined", name)
		}
	}
	// A missing middle part ends the tile there: parts stored ahead are
	// not used past a gap.
	got, err := JoinTile(1, 7, []TilePart{parts[0], parts[2], parts[4]})
	if err != nil || got.Width != partWidth {
		t.Fatalf("gap after part 0: width %d, %v; want %d", got.Width, err, partWidth)
	}
	if _, err := SplitTile(Tile{Width: 3, Data: make([]byte, 10)}, 0); err == nil {
		t.Fatal("SplitTile accepted a malformed tile")
	}
}

func mustSplit(t *testing.T, tile Tile, from int) []TilePart {
	t.Helper()
	ps, err := SplitTile(tile, from)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func clone(ps []TilePart) []TilePart {
	out := make([]TilePart, len(ps))
	for i, p := range ps {
		p.Data = bytes.Clone(p.Data)
		out[i] = p
	}
	return out
}
