package auditlog

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestTilePaths(t *testing.T) {
	tests := []struct {
		level uint8
		index uint64
		width int
		tile  string
	}{
		{0, 0, 256, "tile/0/000"},
		{0, 5, 256, "tile/0/005"},
		{0, 999, 256, "tile/0/999"},
		{0, 1000, 256, "tile/0/x001/000"},
		{1, 1234067, 256, "tile/1/x001/x234/067"}, // the spec's example index
		{2, 0, 1, "tile/2/000.p/1"},
		{0, 273, 112, "tile/0/273.p/112"},
		{63, 1<<64 - 1, 255, "tile/63/x018/x446/x744/x073/x709/x551/615.p/255"},
	}
	for _, tt := range tests {
		got := TilePath(tt.level, tt.index, tt.width)
		if got != tt.tile {
			t.Errorf("TilePath(%d, %d, %d) = %q, want %q", tt.level, tt.index, tt.width, got, tt.tile)
		}
		info, err := ParseTilePath(got)
		if err != nil || info != (TilePathInfo{Level: tt.level, Index: tt.index, Width: tt.width}) {
			t.Errorf("ParseTilePath(%q) = %+v, %v", got, info, err)
		}
		if info.Path() != got {
			t.Errorf("Path() = %q", info.Path())
		}
		entries := EntriesPath(tt.index, tt.width)
		if want := "tile/entries/" + strings.SplitN(tt.tile, "/", 3)[2]; entries != want {
			t.Errorf("EntriesPath(%d, %d) = %q, want %q", tt.index, tt.width, entries, want)
		}
		info, err = ParseTilePath(entries)
		if err != nil || info != (TilePathInfo{Entries: true, Index: tt.index, Width: tt.width}) {
			t.Errorf("ParseTilePath(%q) = %+v, %v", entries, info, err)
		}
		if info.Path() != entries {
			t.Errorf("Path() = %q", info.Path())
		}
	}
}

func TestParseTilePathRejects(t *testing.T) {
	for _, p := range []string{
		"",
		"tile",
		"tile/",
		"tile/0",
		"tile/0/",
		"/tile/0/000",
		"tile/0/000/",
		"tile/00/000",
		"tile/64/000",
		"tile/-1/000",
		"tile/+1/000",
		"tile/a/000",
		"tile/0/00",
		"tile/0/0000",
		"tile/0/x000",
		"tile/0/x000/001",  // leading zero group
		"tile/0/001/002",   // missing x
		"tile/0/x001/x002", // x on the last
		"tile/0/xx01/002",
		"tile/0/x1a3/002",
		"tile/0/000.p/0",
		"tile/0/000.p/256",
		"tile/0/000.p/01",
		"tile/0/000.p/",
		"tile/0/000.p/1/",
		"tile/0/000.p/1.p/1",
		"tile/0/x001.p/1/234",
		"tile/0/x018/x446/x744/x073/x709/x551/616", // 2^64
		"tile/0/x001/x018/x446/x744/x073/x709/x551/615",
		"tile/entry/000",
		"tile/entries/x000/000",
		"tiles/0/000",
		"tile/0/000?x",
		"tile/0/ 000",
	} {
		if info, err := ParseTilePath(p); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseTilePath(%q) = %+v, %v; want ErrMalformed", p, info, err)
		}
	}
}

func TestTilePathPanics(t *testing.T) {
	for _, f := range []func(){
		func() { TilePath(0, 0, 0) },
		func() { TilePath(0, 0, 257) },
		func() { TilePath(64, 0, 1) },
		func() { EntriesPath(0, -1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		}()
	}
}

func TestTileWidthAt(t *testing.T) {
	tests := []struct {
		level uint8
		index uint64
		size  uint64
		want  int
	}{
		// The spec's tree of size 70,000: 273 full level-0 tiles, a
		// partial one of width 112, one full level-1 tile, a partial one of
		// width 17, and a partial level-2 tile of width 1.
		{0, 0, 70000, 256},
		{0, 272, 70000, 256},
		{0, 273, 70000, 112},
		{0, 274, 70000, 0},
		{1, 0, 70000, 256},
		{1, 1, 70000, 17},
		{1, 2, 70000, 0},
		{2, 0, 70000, 1},
		{2, 1, 70000, 0},
		{3, 0, 70000, 0},
		// Size 256: a full level-0 tile and a level-1 tile of width 1.
		{0, 0, 256, 256},
		{0, 1, 256, 0},
		{1, 0, 256, 1},
		{0, 0, 0, 0},
		{0, 0, 1, 1},
		{0, 0, 255, 255},
		{7, 0, 1<<64 - 1, 255},
		{7, 1, 1<<64 - 1, 0},
		{8, 0, 1<<64 - 1, 0},
		{63, 0, 1<<64 - 1, 0},
		{0, 1<<64 - 1, 1<<64 - 1, 0},
		{0, 1<<56 - 1, 1<<64 - 1, 255},
	}
	for _, tt := range tests {
		if got := TileWidthAt(tt.level, tt.index, tt.size); got != tt.want {
			t.Errorf("TileWidthAt(%d, %d, %d) = %d, want %d", tt.level, tt.index, tt.size, got, tt.want)
		}
	}
}

func TestEntryBundle(t *testing.T) {
	largest := bytes.Repeat([]byte{'m'}, MaxEntrySize)
	tests := [][][]byte{
		{[]byte("one")},
		{{}, []byte("a"), {}},
		{largest, []byte("after the largest")},
	}
	var full [][]byte
	for i := range TileWidth {
		full = append(full, fmt.Appendf(nil, "entry %d", i))
	}
	tests = append(tests, full)
	for _, entries := range tests {
		b, err := AppendEntryBundle(nil, entries...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseEntryBundle(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(entries) {
			t.Fatalf("got %d entries, want %d", len(got), len(entries))
		}
		for i := range got {
			if !bytes.Equal(got[i], entries[i]) {
				t.Errorf("entry %d = %q, want %q", i, got[i], entries[i])
			}
		}
	}
	b, err := AppendEntryBundle([]byte{0, 1, 'x'}, []byte("yz"))
	if err != nil || string(b) != "\x00\x01x\x00\x02yz" {
		t.Errorf("appending to a bundle = %q, %v", b, err)
	}
	dst := []byte{0, 1, 'x'}
	got, err := AppendEntryBundle(dst, []byte("ok"), append(largest, '!'))
	if !errors.Is(err, ErrMalformed) || !bytes.Equal(got, dst) {
		t.Errorf("oversized entry: %q, %v", got, err)
	}
}

func TestParseEntryBundleRejects(t *testing.T) {
	full := make([]byte, 0, 2*257)
	for range 257 {
		full = append(full, 0, 0)
	}
	for name, b := range map[string][]byte{
		"empty":               {},
		"one byte":            {0},
		"truncated entry":     {0, 3, 'a', 'b'},
		"trailing byte":       {0, 1, 'a', 0},
		"257 entries":         full,
		"length beyond input": {0xff, 0xff},
	} {
		if _, err := ParseEntryBundle(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error = %v", name, err)
		}
	}
	if got, err := ParseEntryBundle(full[:512]); err != nil || len(got) != 256 {
		t.Errorf("256 empty entries: %d, %v", len(got), err)
	}
}

func TestHashTile(t *testing.T) {
	var hs []Hash
	for i := range TileWidth {
		hs = append(hs, LeafHash([]byte{byte(i)}))
	}
	for _, n := range []int{1, 2, 255, 256} {
		got, err := ParseHashTile(AppendHashTile(nil, hs[:n]...))
		if err != nil || len(got) != n || got[n-1] != hs[n-1] || got[0] != hs[0] {
			t.Errorf("%d hashes: %d, %v", n, len(got), err)
		}
	}
	for _, size := range []int{0, 1, 31, 33, 257 * 32} {
		if _, err := ParseHashTile(make([]byte, size)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%d bytes: error = %v", size, err)
		}
	}
}
