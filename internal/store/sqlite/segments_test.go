package sqlite

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store"
)

// entries returns count distinct entries of size bytes, numbered from
// first, as a chunk.
func entries(first, count, size int) []byte {
	var chunk []byte
	for i := first; i < first+count; i++ {
		e := bytes.Repeat([]byte{byte(i)}, size)
		copy(e, fmt.Sprintf("entry %d.", i))
		chunk, _ = auditlog.AppendEntryBundle(chunk, e)
	}
	return chunk
}

// readAll reads entries [from, to) back as one chunk's bytes.
func readAll(t *testing.T, st *Store, from, to uint64) []byte {
	t.Helper()
	cs, err := st.Chunks(t.Context(), from, to)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	next := from
	for _, c := range cs {
		if c.First > next {
			t.Fatalf("Chunks(%d, %d): a gap at %d", from, to, next)
		}
		skip, err := skipEntries(c.Data, next-c.First)
		if err != nil {
			t.Fatal(err)
		}
		data := c.Data[skip:]
		if end := c.First + c.Count; end > to {
			n, err := skipEntries(data, to-next)
			if err != nil {
				t.Fatal(err)
			}
			data = data[:n]
		}
		out = append(out, data...)
		next = min(to, c.First+c.Count)
	}
	if next != to {
		t.Fatalf("Chunks(%d, %d) stops at %d", from, to, next)
	}
	return out
}

func openLog(t *testing.T, dir string) *Store {
	t.Helper()
	st, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.InitLog(t.Context(), "example.com/audit"); err != nil {
		t.Fatal(err)
	}
	return st
}

func rawQuery(t *testing.T, st *Store, q string, args ...any) [][]int64 {
	t.Helper()
	rows, err := st.rdb.QueryContext(t.Context(), q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out [][]int64
	for rows.Next() {
		row := make([]int64, len(cols))
		ptrs := make([]any, len(cols))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, row)
	}
	return out
}

// TestSegments appends commits large enough for segment files, beside small
// ones kept in the database, and reads them back across a reopen that left
// unacknowledged bytes at the end of the first segment.
func TestSegments(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st := openLog(t, dir)

	small := entries(0, 10, 100)
	if _, err := st.AppendChunk(ctx, 10, small); err != nil {
		t.Fatal(err)
	}
	big := entries(10, 600, 100) // 61 KiB: a segment
	first, err := st.AppendChunk(ctx, 600, big)
	if err != nil || first != 10 {
		t.Fatalf("AppendChunk = %d, %v; want 10", first, err)
	}
	// The large commit's extents are cut at entry-bundle boundaries.
	got := rawQuery(t, st, `SELECT first, count, segment FROM log_extents ORDER BY first`)
	want := [][]int64{{10, 246, 1}, {256, 256, 1}, {512, 98, 1}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("extents %v, want %v", got, want)
	}
	if n := rawQuery(t, st, `SELECT COUNT(*) FROM log_entries`)[0][0]; n != 1 {
		t.Fatalf("%d chunks in the database, want the small one", n)
	}
	all := slices.Concat(small, big)
	if !bytes.Equal(readAll(t, st, 0, 610), all) {
		t.Fatal("entries read back differ")
	}
	if !bytes.Equal(readAll(t, st, 300, 301), entries(300, 1, 100)) {
		t.Fatal("entry 300 read back differs")
	}

	// A write that was never committed (the process died first) leaves
	// bytes no extent names; they are never read.
	seg := filepath.Join(dir, FileName+SegmentsSuffix, fmt.Sprintf("%016x.seg", 1))
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(bytes.Repeat([]byte{0xff}, 5000))
	f.Close()
	st.Close()

	st = openLog(t, dir)
	defer st.Close()
	more := entries(610, 300, 100)
	if first, err := st.AppendChunk(ctx, 300, more); err != nil || first != 610 {
		t.Fatalf("AppendChunk after reopen = %d, %v; want 610", first, err)
	}
	if segs := rawQuery(t, st, `SELECT DISTINCT segment FROM log_extents WHERE first >= 610`); len(segs) != 1 || segs[0][0] != 2 {
		t.Fatalf("the reopened store appended to segments %v, want a new one (2)", segs)
	}
	all = slices.Concat(all, more)
	if !bytes.Equal(readAll(t, st, 0, 910), all) {
		t.Fatal("entries read back after reopening differ")
	}

	// A malformed chunk is refused before it reaches a segment.
	for _, bad := range []struct {
		count uint64
		data  []byte
	}{{600, big[:len(big)-1]}, {599, big}, {601, big}} {
		if _, err := st.AppendChunk(ctx, bad.count, bad.data); err == nil {
			t.Errorf("AppendChunk(%d, %d bytes) succeeded", bad.count, len(bad.data))
		}
	}
}

// TestSegmentPrune prunes through segment extents: the straddling extent is
// cut, the bytes below the pruning point are gone from the file, and a
// segment nothing names any more is deleted once no process holds it.
func TestSegmentPrune(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st := openLog(t, dir)
	big := entries(0, 600, 100)
	if _, err := st.AppendChunk(ctx, 600, big); err != nil {
		t.Fatal(err)
	}
	integrate(t, st, 0, 600)

	if err := st.PruneEntries(ctx, 300); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, st, 300, 600), entries(300, 300, 100)) {
		t.Fatal("entries above the pruning point differ")
	}
	if cs, err := st.Chunks(ctx, 0, 300); err != nil || len(cs) != 0 {
		t.Fatalf("Chunks below the pruning point = %d chunks, %v", len(cs), err)
	}
	seg := filepath.Join(dir, FileName+SegmentsSuffix, fmt.Sprintf("%016x.seg", 1))
	file, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	kept := int(segmentHeader) + len(entries(0, 300, 100))
	if !bytes.HasPrefix(file, []byte(segmentMagic)) || bytes.Count(file[segmentHeader:kept], []byte{0}) != kept-int(segmentHeader) {
		t.Fatal("the pruned entries' bytes are still in the segment")
	}
	if !bytes.Equal(file[kept:], entries(300, 300, 100)) {
		t.Fatal("the segment lost bytes above the pruning point")
	}

	// Pruning everything: the segment this process appends to stays; once
	// no process holds it (and it is old enough), it goes.
	if err := st.PruneEntries(ctx, 600); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(seg); err != nil {
		t.Fatalf("the segment in use was deleted: %v", err)
	}
	st.Close()
	st = openLog(t, dir)
	defer st.Close()
	tidyAged(t, st)
	if _, err := os.Stat(seg); !os.IsNotExist(err) {
		t.Fatalf("a segment nothing names is still there: %v", err)
	}
	if n := rawQuery(t, st, `SELECT COUNT(*) FROM log_segments`)[0][0]; n != 0 {
		t.Fatalf("%d segments registered, want none", n)
	}
}

// TestSegmentHeldByAnother leaves alone a segment another holder has locked
// even though no extent names it yet.
func TestSegmentHeldByAnother(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	writer := openLog(t, dir)
	defer writer.Close()
	mustAppend(t, writer, 0, 600)
	integrate(t, writer, 0, 600)
	other := openLog(t, dir)
	defer other.Close()
	if err := other.PruneEntries(ctx, 600); err != nil {
		t.Fatal(err)
	}
	tidyAged(t, other)
	if _, err := os.Stat(writer.seg.name(1)); err != nil {
		t.Fatalf("a segment another store holds was deleted: %v", err)
	}
	mustAppend(t, writer, 600, 600)
	if !bytes.Equal(readAll(t, other, 600, 1200), entries(600, 600, 100)) {
		t.Fatal("entries appended after the prune differ")
	}
}

// mustAppend appends count entries of 100 bytes, numbered from first, as
// one commit, which must take index first.
func mustAppend(t *testing.T, st *Store, first, count int) {
	t.Helper()
	if got, err := st.AppendChunk(t.Context(), uint64(count), entries(first, count, 100)); err != nil || got != uint64(first) {
		t.Fatalf("AppendChunk(%d entries) = %d, %v; want %d", count, got, err, first)
	}
}

// tidyAged tidies st's segments as if each were older than segmentMinAge.
func tidyAged(t *testing.T, st *Store) {
	t.Helper()
	if _, err := st.wdb.ExecContext(t.Context(), `UPDATE log_segments SET created = ?`, ts(time.Now().Add(-2*segmentMinAge))); err != nil {
		t.Fatal(err)
	}
	if err := st.tidySegments(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// integrate records the tree as integrated from size from to size to, with
// no tiles.
func integrate(t *testing.T, st *Store, from, to uint64) {
	t.Helper()
	in := store.Integration{Size: to, Checkpoint: fmt.Appendf(nil, "checkpoint %d\n", to), Time: time.Now()}
	if err := st.Integrate(t.Context(), from, in); err != nil {
		t.Fatal(err)
	}
}

// fullTile returns level-0 tile index over leaves, with its interior rows.
func fullTile(index uint64, leaves []auditlog.Hash) store.Tile {
	var rows []byte
	row := leaves
	for range store.TileHeight {
		var next []auditlog.Hash
		for i, h := range row {
			rows = append(rows, h[:]...)
			if i%2 == 1 {
				next = append(next, auditlog.NodeHash(row[i-1], h))
			}
		}
		row = next
	}
	return store.Tile{Level: 0, Index: index, Width: len(leaves), Data: rows}
}

// TestTileFile stores full level-0 tiles in the tile file: they are read
// from it once integrated, checked before then, and their growing versions
// leave the database with the integration that covers them.
func TestTileFile(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st := openLog(t, dir)
	defer st.Close()
	if _, err := st.AppendChunk(ctx, 768, entries(0, 768, 10)); err != nil {
		t.Fatal(err)
	}
	leaves := make([]auditlog.Hash, 768)
	for i := range leaves {
		leaves[i] = auditlog.LeafHash(fmt.Appendf(nil, "leaf %d", i))
	}
	tiles := make([]store.Tile, 3)
	var parts [3][]store.TilePart
	for i := range tiles {
		tiles[i] = fullTile(uint64(i), leaves[256*i:256*(i+1)])
		var err error
		if parts[i], err = store.SplitTile(tiles[i], 0); err != nil {
			t.Fatal(err)
		}
	}
	// Tile 0 grows in the database first (64 wide, a stand-in).
	growing := fullTile(0, leaves[:64])
	gparts, err := store.SplitTile(growing, 0)
	if err != nil {
		t.Fatal(err)
	}
	in := store.Integration{Size: 100, Tiles: gparts, Checkpoint: []byte("checkpoint 100\n"), Time: time.Now()}
	if err := st.Integrate(ctx, 0, in); err != nil {
		t.Fatal(err)
	}
	if err := st.PutTiles(ctx, slices.Concat(parts[0], parts[1], parts[2])); err != nil {
		t.Fatal(err)
	}
	// Tiles 1 and 2 are not integrated and have no growing version: read
	// from the file, checked.
	for i := 1; i < 3; i++ {
		got, err := store.ReadTile(ctx, st, 0, uint64(i))
		if err != nil || !bytes.Equal(got.Data, tiles[i].Data) {
			t.Fatalf("tile %d before integration: %v", i, err)
		}
	}
	// Tile 0 is partly integrated: its growing version is read.
	if got, err := store.ReadTile(ctx, st, 0, 0); err != nil || got.Width != 64 {
		t.Fatalf("tile 0 before integration: width %d, %v", got.Width, err)
	}
	integrate(t, st, 100, 512)
	if n := rawQuery(t, st, `SELECT COUNT(*) FROM log_tile_parts WHERE id < ?`, partID(1, 0, 0))[0][0]; n != 0 {
		t.Fatalf("%d level-0 parts left in the database after integration", n)
	}
	for i := range 3 {
		got, err := store.ReadTile(ctx, st, 0, uint64(i))
		if err != nil || !bytes.Equal(got.Data, tiles[i].Data) {
			t.Fatalf("tile %d after integration: %v", i, err)
		}
	}
	// A torn tile beyond the integrated tree (a page never written before
	// a crash) is not read.
	f, err := os.OpenFile(filepath.Join(dir, FileName+TilesSuffix), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 512), 2*fullTileBytes+8192); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if ps, err := st.TileParts(ctx, 0, 2, store.AllParts); err != nil || len(ps) != 0 {
		t.Fatalf("a torn tile beyond the tree: %d parts, %v", len(ps), err)
	}
	if fi, err := os.Stat(filepath.Join(dir, FileName+TilesSuffix)); err != nil || fi.Size() != 3*fullTileBytes {
		t.Fatalf("tile file: %v, %v; want %d bytes", fi.Size(), err, 3*fullTileBytes)
	}
}

// TestSegmentIDsNotReused deletes the newest segment and checks that the
// next one gets a new id, that a file left behind by a deleted segment is
// removed, and that a reader refuses a file that is not the segment it
// names.
func TestSegmentIDsNotReused(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st := openLog(t, dir)
	mustAppend(t, st, 0, 600)
	st.seg.mu.Lock()
	st.seg.abandon()
	st.seg.mu.Unlock()
	mustAppend(t, st, 600, 600)
	integrate(t, st, 0, 1200)
	if err := st.PruneEntries(ctx, 1200); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st = openLog(t, dir)
	defer st.Close()
	tidyAged(t, st) // deletes segments 1 and 2
	// A leftover file of segment 1 (its row deleted, the process gone).
	if err := os.WriteFile(st.seg.name(1), []byte("left behind"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, st, 1200, 600)
	if segs := rawQuery(t, st, `SELECT id FROM log_segments`); len(segs) != 1 || segs[0][0] != 3 {
		t.Fatalf("segments %v after deleting 1 and 2, want [3]", segs)
	}
	if !bytes.Equal(readAll(t, st, 1200, 1800), entries(1200, 600, 100)) {
		t.Fatal("entries in the new segment differ")
	}
	if err := st.tidySegments(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(st.seg.name(1)); !os.IsNotExist(err) {
		t.Fatalf("the file of a deleted segment is still there: %v", err)
	}
	if _, err := st.seg.readExtent(2, segmentHeader, 10); err == nil {
		t.Fatal("read a segment that was deleted")
	}
	// A file under another segment's name is refused.
	if err := os.WriteFile(st.seg.name(9), binary.BigEndian.AppendUint64([]byte(segmentMagic), 3), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.seg.readExtent(9, segmentHeader, 0); err == nil {
		t.Fatal("read segment 9 from a file that says it is segment 3")
	}
}

// TestSegmentInFlight checks that an abandoned segment with an append in
// flight stays open, and so locked, and that pruning leaves that append's
// bytes alone, even when the next segment has an append at the same offset.
func TestSegmentInFlight(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st := openLog(t, dir)
	defer st.Close()
	mustAppend(t, st, 0, 600)
	integrate(t, st, 0, 600)
	g := &st.seg
	// An append to segment 1 at its end, its extents not yet committed.
	g.mu.Lock()
	pending := entries(600, 600, 100)
	id, off, err := st.segmentWrite(ctx, pending)
	if err != nil || id != 1 {
		t.Fatalf("segmentWrite = %d, %v", id, err)
	}
	g.inflight[segPos{id, off}] = true
	g.abandon()
	g.mu.Unlock()
	if g.retired[1] == nil {
		t.Fatal("a segment with an append in flight was closed")
	}
	if err := st.PruneEntries(ctx, 600); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, st, 600, 600)
	if err := st.tidySegments(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(g.name(1))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data[off:], pending) {
		t.Fatal("pruning wiped the bytes of an append in flight")
	}
	if bytes.Count(data[segmentHeader:off], []byte{0}) != int(off-segmentHeader) {
		t.Fatal("pruning left the pruned entries' bytes")
	}
}

// TestSegmentDamaged returns an extent whose bytes do not split into its
// entries as it is, for the reader to report, rather than failing.
func TestSegmentDamaged(t *testing.T) {
	ctx := t.Context()
	st := openLog(t, t.TempDir())
	defer st.Close()
	mustAppend(t, st, 0, 600)
	if _, err := st.wdb.ExecContext(ctx, `UPDATE log_extents SET length = length - 1 WHERE first = 256`); err != nil {
		t.Fatal(err)
	}
	cs, err := st.Chunks(ctx, 256, 300)
	if err != nil || len(cs) != 1 || checkChunk(cs[0].Count, cs[0].Data) == nil {
		t.Fatalf("Chunks of a damaged extent = %d chunks, %v", len(cs), err)
	}
}
