package auditlog

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// TileWidth is the number of hashes in a full tile, and of entries in a
// full entry bundle (c2sp.org/tlog-tiles).
const TileWidth = 256

// TileHeight is the number of tree levels a tile spans: 256 = 2^8.
const TileHeight = 8

// MaxTileLevel is the highest tile level a tile path may name.
const MaxTileLevel = 63

// MaxEntrySize is the largest entry an entry bundle can hold (a 2-byte
// length prefix).
const MaxEntrySize = 1<<16 - 1

// appendTileIndex appends n as zero-padded 3-digit path elements, all but
// the last prefixed with "x": 1234067 → x001/x234/067.
func appendTileIndex(b []byte, n uint64) []byte {
	var groups [7]uint64 // 2^64 has 20 digits: at most 7 groups
	k := 0
	for {
		groups[k] = n % 1000
		k++
		n /= 1000
		if n == 0 {
			break
		}
	}
	for i := k - 1; i >= 0; i-- {
		if i > 0 {
			b = append(b, 'x')
		}
		g := groups[i]
		b = append(b, byte('0'+g/100), byte('0'+g/10%10), byte('0'+g%10))
		if i > 0 {
			b = append(b, '/')
		}
	}
	return b
}

func appendWidth(b []byte, width int) []byte {
	if width == TileWidth {
		return b
	}
	b = append(b, ".p/"...)
	return strconv.AppendInt(b, int64(width), 10)
}

func checkWidth(width int) {
	if width < 1 || width > TileWidth {
		panic(fmt.Sprintf("auditlog: tile width %d outside 1..256", width))
	}
}

// TilePath returns the c2sp.org/tlog-tiles path of the hash tile at level
// and index with width hashes: "tile/<L>/<N>" for a full tile (width 256)
// and "tile/<L>/<N>.p/<W>" for a partial one, N written as x001/x234/067.
// It panics if width is outside 1..256 or level above 63: those are not
// tiles, and a caller that asks for one has a bug.
func TilePath(level uint8, index uint64, width int) string {
	checkWidth(width)
	if level > MaxTileLevel {
		panic(fmt.Sprintf("auditlog: tile level %d above 63", level))
	}
	b := make([]byte, 0, 48)
	b = append(b, "tile/"...)
	b = strconv.AppendUint(b, uint64(level), 10)
	b = append(b, '/')
	b = appendTileIndex(b, index)
	return string(appendWidth(b, width))
}

// EntriesPath returns the c2sp.org/tlog-tiles path of the entry bundle at
// index with width entries: "tile/entries/<N>[.p/<W>]". It panics if width
// is outside 1..256.
func EntriesPath(index uint64, width int) string {
	checkWidth(width)
	b := make([]byte, 0, 48)
	b = append(b, "tile/entries/"...)
	b = appendTileIndex(b, index)
	return string(appendWidth(b, width))
}

// TilePathInfo describes a tile path: a hash tile (Level, Index, Width) or
// an entry bundle (Entries, Index, Width; Level 0). Width is 256 for full
// tiles.
type TilePathInfo struct {
	Entries bool
	Level   uint8
	Index   uint64
	Width   int
}

// Path returns the path info describes.
func (info TilePathInfo) Path() string {
	if info.Entries {
		return EntriesPath(info.Index, info.Width)
	}
	return TilePath(info.Level, info.Index, info.Width)
}

// ParseTilePath parses a c2sp.org/tlog-tiles path ("tile/<L>/<N>[.p/<W>]"
// or "tile/entries/<N>[.p/<W>]", without a leading slash). It is the strict
// inverse of TilePath and EntriesPath: the level is 0..63 without leading
// zeros; the index is 3-digit groups, all but the last prefixed with "x",
// the first group not x000, and fits in 64 bits; the width is 1..255
// without leading zeros. Anything else matches ErrMalformed.
func ParseTilePath(p string) (TilePathInfo, error) {
	const format = "tile path"
	rest, ok := strings.CutPrefix(p, "tile/")
	if !ok {
		return TilePathInfo{}, malformed(format, 0, `does not start with "tile/"`)
	}
	var info TilePathInfo
	head, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return TilePathInfo{}, malformed(format, 0, "no index")
	}
	if head == "entries" {
		info.Entries = true
	} else {
		level, ok := parseDecimal(head)
		if !ok || level > MaxTileLevel {
			return TilePathInfo{}, malformed(format, 0, "level is not 0..63 without leading zeros")
		}
		info.Level = uint8(level)
	}
	info.Width = TileWidth
	if idx, w, partial := strings.Cut(rest, ".p/"); partial {
		width, ok := parseDecimal(w)
		if !ok || width < 1 || width >= TileWidth {
			return TilePathInfo{}, malformed(format, 0, "partial width is not 1..255 without leading zeros")
		}
		info.Width = int(width)
		rest = idx
	}
	groups := strings.Split(rest, "/")
	if len(groups) > 7 {
		return TilePathInfo{}, malformed(format, 0, "index too large")
	}
	var index uint64
	for i, g := range groups {
		last := i == len(groups)-1
		if !last {
			var ok bool
			if g, ok = strings.CutPrefix(g, "x"); !ok {
				return TilePathInfo{}, malformed(format, 0, `index element other than the last lacks the "x" prefix`)
			}
		}
		if len(g) != 3 || !isDigits(g) {
			return TilePathInfo{}, malformed(format, 0, "index element is not three digits")
		}
		v := uint64(g[0]-'0')*100 + uint64(g[1]-'0')*10 + uint64(g[2]-'0')
		if i == 0 && v == 0 && !last {
			return TilePathInfo{}, malformed(format, 0, "index has a leading zero element")
		}
		if index > (1<<64-1-v)/1000 {
			return TilePathInfo{}, malformed(format, 0, "index does not fit in 64 bits")
		}
		index = index*1000 + v
	}
	info.Index = index
	return info, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// TileWidthAt returns the number of hashes the tile at level and index
// holds in a tree of treeSize entries: 256 for a full tile, 1..255 for the
// partial tile at the right edge, and 0 if the tile does not exist at that
// size. Entry bundles have the width of the level-0 tile with their index.
func TileWidthAt(level uint8, index, treeSize uint64) int {
	if uint(level)*TileHeight >= 64 {
		return 0
	}
	// Number of hashes at this tile level: complete subtrees of 256^level
	// entries.
	n := treeSize >> (uint(level) * TileHeight)
	if index > n/TileWidth {
		return 0
	}
	w := n - index*TileWidth
	if w > TileWidth {
		return TileWidth
	}
	return int(w)
}

// AppendEntryBundle appends entries to the entry bundle dst, each with a
// 2-byte big-endian length prefix. An entry longer than 65535 bytes is an
// error matching ErrMalformed, and nothing is appended. Keeping a bundle
// at 256 entries or fewer is up to the caller.
func AppendEntryBundle(dst []byte, entries ...[]byte) ([]byte, error) {
	size := 0
	for i, e := range entries {
		if len(e) > MaxEntrySize {
			return dst, malformed("entry bundle", 0, fmt.Sprintf("entry %d is %d bytes, more than 65535", i, len(e)))
		}
		size += 2 + len(e)
	}
	if dst == nil {
		dst = make([]byte, 0, size)
	}
	for _, e := range entries {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(e)))
		dst = append(dst, e...)
	}
	return dst, nil
}

// ParseEntryBundle parses an entry bundle: 1 to 256 entries, each with a
// 2-byte big-endian length prefix, and nothing after the last. The entries
// are slices of b.
func ParseEntryBundle(b []byte) ([][]byte, error) {
	const format = "entry bundle"
	if len(b) == 0 {
		return nil, malformed(format, 0, "empty")
	}
	var entries [][]byte
	for len(b) > 0 {
		if len(entries) == TileWidth {
			return nil, malformed(format, 0, "more than 256 entries")
		}
		if len(b) < 2 {
			return nil, malformed(format, 0, "truncated length prefix")
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b)-2 < n {
			return nil, malformed(format, 0, fmt.Sprintf("entry %d truncated", len(entries)))
		}
		entries = append(entries, b[2:2+n:2+n])
		b = b[2+n:]
	}
	return entries, nil
}

// ParseHashTile parses a hash tile: 1 to 256 concatenated 32-byte hashes.
func ParseHashTile(b []byte) ([]Hash, error) {
	const format = "hash tile"
	if len(b) == 0 || len(b)%HashSize != 0 || len(b) > TileWidth*HashSize {
		return nil, malformed(format, 0, fmt.Sprintf("%d bytes is not 1 to 256 hashes", len(b)))
	}
	hs := make([]Hash, len(b)/HashSize)
	for i := range hs {
		copy(hs[i][:], b[i*HashSize:])
	}
	return hs, nil
}

// AppendHashTile appends the hashes to dst, as a hash tile holds them.
func AppendHashTile(dst []byte, hashes ...Hash) []byte {
	for i := range hashes {
		dst = append(dst, hashes[i][:]...)
	}
	return dst
}
