package auditverify_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/auditverify"
	"github.com/custos-dev/custos/internal/store/sqlite"
)

// verify runs Verify on the data directory dir against the witness's
// checkpoints, with the log and witness keys given.
func verify(t *testing.T, f *fixture, dir string, opts auditverify.Options) *auditverify.Report {
	t.Helper()
	st, err := sqlite.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rep, err := auditverify.Verify(t.Context(), st, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func witnessed(f *fixture) auditverify.Options {
	return auditverify.Options{
		LogKey:          f.vkey,
		WitnessKeys:     []string{f.witness},
		Checkpoints:     [][]byte{f.early, f.final},
		CheckpointNames: []string{"witness (early)", "witness (latest)"},
	}
}

// want is the first problem a tampered log must show.
type want struct {
	kind        auditverify.Kind
	first, last uint64
	from, until time.Time
	checkpoint  string
}

func checkFirst(t *testing.T, rep *auditverify.Report, w want) {
	t.Helper()
	if rep.Intact || len(rep.Problems) == 0 {
		t.Fatalf("tampered log verified as intact:\n%s", rep)
	}
	p := rep.Problems[0]
	if p.Kind != w.kind || p.FirstIndex != w.first || p.LastIndex != w.last {
		t.Errorf("first problem = %s %d–%d, want %s %d–%d\n%s", p.Kind, p.FirstIndex, p.LastIndex, w.kind, w.first, w.last, rep)
	}
	if !p.From.Equal(w.from) || !p.Until.Equal(w.until) {
		t.Errorf("first problem is between %v and %v, want %v and %v\n%s", p.From, p.Until, w.from, w.until, rep)
	}
	if w.checkpoint != "" && p.Checkpoint != w.checkpoint {
		t.Errorf("first problem names checkpoint %q, want %q", p.Checkpoint, w.checkpoint)
	}
	// The text report names the range.
	if s := rep.String(); !strings.Contains(s, "NOT INTACT") || !strings.Contains(s, fmt.Sprintf("%s: entr", w.kind)) {
		t.Errorf("text report does not name the problem:\n%s", s)
	}
}

func TestIntact(t *testing.T) {
	f := getFixture(t)
	rep := verify(t, f, f.clone(t), witnessed(f))
	if !rep.Intact || len(rep.Problems) != 0 {
		t.Fatalf("intact log has problems:\n%s", rep)
	}
	if rep.Origin != origin || rep.Size != f.size || rep.EntriesChecked != f.size || rep.Sequenced != f.size {
		t.Errorf("report = origin %q size %d checked %d sequenced %d; want %q %d", rep.Origin, rep.Size, rep.EntriesChecked, rep.Sequenced, origin, f.size)
	}
	if rep.LogKeySource != auditverify.KeySourceGiven || rep.LogKey != f.vkey {
		t.Errorf("log key %q from %q", rep.LogKey, rep.LogKeySource)
	}
	if rep.CheckpointsExternal != 2 || rep.CheckpointsOwn < 3 {
		t.Errorf("checked %d own and %d external checkpoints", rep.CheckpointsOwn, rep.CheckpointsExternal)
	}
	for _, e := range rep.External {
		if e.Result != "match" || len(e.Cosigners) != 1 || e.Cosigners[0] != witnessName {
			t.Errorf("external %+v", e)
		}
	}
	if rep.Cosigned[witnessName] != 2 || len(rep.UnknownCosigners) != 0 {
		t.Errorf("cosigned %v, unknown %v", rep.Cosigned, rep.UnknownCosigners)
	}
	if !rep.FirstTime.Equal(f.times[0]) || !rep.LastTime.Equal(f.times[len(f.times)-1]) {
		t.Errorf("times %v–%v", rep.FirstTime, rep.LastTime)
	}
	// JSON round-trips the verdict.
	b, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Intact   bool   `json:"intact"`
		Size     uint64 `json:"size"`
		Problems []any  `json:"problems"`
	}
	if err := json.Unmarshal(b, &back); err != nil || !back.Intact || back.Size != f.size || back.Problems == nil || len(back.Problems) != 0 {
		t.Errorf("JSON report %s (%v)", b, err)
	}

	// Without a log key the database's own note key is used, and the
	// report says so; an unknown witness is listed, not fatal.
	rep = verify(t, f, f.clone(t), auditverify.Options{Checkpoints: [][]byte{f.final}})
	if !rep.Intact || rep.LogKeySource != auditverify.KeySourceStore || rep.LogKey != f.vkey {
		t.Errorf("with the stored key: intact %v, key %q from %q\n%s", rep.Intact, rep.LogKey, rep.LogKeySource, rep)
	}
	if len(rep.UnknownCosigners) != 1 || !strings.HasPrefix(rep.UnknownCosigners[0], witnessName+"+") {
		t.Errorf("unknown cosigners %v", rep.UnknownCosigners)
	}
	if !strings.Contains(rep.String(), "from the database") {
		t.Errorf("text report does not say where the key came from:\n%s", rep)
	}
}

// TestTamper is invariant I5: every way of deleting, altering, reordering,
// truncating, rolling back or forking the log is caught against a
// checkpoint the witness holds, and the report names the range.
func TestTamper(t *testing.T) {
	f := getFixture(t)
	// The 23 May – 2 June case: the events of those eleven days.
	gapFrom := f.index(time.Date(2026, 5, 23, 0, 0, 0, 0, time.UTC))
	gapTo := f.index(time.Date(2026, 6, 3, 0, 0, 0, 0, time.UTC)) // exclusive
	alt := f.index(time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC))
	swap := f.index(time.Date(2026, 5, 28, 6, 0, 0, 0, time.UTC))
	swapFar := f.index(time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC))
	forkAt := f.index(time.Date(2026, 6, 5, 0, 0, 0, 0, time.UTC))

	tests := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		opts   func(auditverify.Options) auditverify.Options
		want   want
	}{{
		name: "delete 23 May to 2 June",
		tamper: func(t *testing.T, dir string) {
			sqlExec(t, dir, fmt.Sprintf(`DELETE FROM log_entries WHERE first >= %d AND first < %d`, gapFrom, gapTo))
		},
		want: want{kind: auditverify.KindMissing, first: gapFrom, last: gapTo - 1, from: f.times[gapFrom-1], until: f.times[gapTo]},
	}, {
		name: "alter one entry",
		tamper: func(t *testing.T, dir string) {
			e := bytes.Replace(f.entries[alt], fmt.Appendf(nil, "acc_%04d", alt), []byte("acc_9999"), 1)
			setEntry(t, dir, alt, e)
		},
		want: want{kind: auditverify.KindAltered, first: alt, last: alt, from: f.times[alt-1], until: f.times[alt+1]},
	}, {
		name: "reorder two adjacent",
		tamper: func(t *testing.T, dir string) {
			setEntry(t, dir, swap, f.entries[swap+1])
			setEntry(t, dir, swap+1, f.entries[swap])
		},
		want: want{kind: auditverify.KindReordered, first: swap, last: swap + 1, from: f.times[swap-1], until: f.times[swap+2]},
	}, {
		name: "reorder two far apart",
		tamper: func(t *testing.T, dir string) {
			setEntry(t, dir, swap, f.entries[swapFar])
			setEntry(t, dir, swapFar, f.entries[swap])
		},
		want: want{kind: auditverify.KindReordered, first: swap, last: swapFar, from: f.times[swap-1], until: f.times[swapFar+1]},
	}, {
		name: "truncate the tail",
		tamper: func(t *testing.T, dir string) {
			// Cut back to the early checkpoint, rolling the state and the
			// log's own history back with it.
			n := f.earlySize
			cp := ownCheckpoint(t, dir, n)
			sqlExec(t, dir,
				fmt.Sprintf(`DELETE FROM log_entries WHERE first >= %d`, n),
				fmt.Sprintf(`DELETE FROM log_checkpoints WHERE size > %d`, n),
				fmt.Sprintf(`UPDATE log_state SET sequenced = %d, integrated = %d, checkpoint = x'%x'`, n, n, cp))
		},
		want: want{kind: auditverify.KindTruncated, first: f.earlySize, last: f.size - 1, from: f.times[f.earlySize-1], until: f.finalTime, checkpoint: "witness (latest)"},
	}, {
		name: "restore an older copy",
		tamper: func(t *testing.T, dir string) {
			if err := copyDir(f.oldDir, dir); err != nil {
				t.Fatal(err)
			}
		},
		want: want{kind: auditverify.KindTruncated, first: f.earlySize, last: f.size - 1, from: f.times[f.earlySize-1], until: f.finalTime, checkpoint: "witness (latest)"},
	}, {
		name: "sign a fork",
		tamper: func(t *testing.T, dir string) {
			fork := f.buildFork(t, forkAt)
			sqlExec(t, dir,
				fmt.Sprintf(`ATTACH DATABASE '%s' AS fork`, filepath.Join(fork, sqlite.FileName)),
				`DELETE FROM log_entries`, `INSERT INTO log_entries SELECT * FROM fork.log_entries`,
				`DELETE FROM log_tile_parts`, `INSERT INTO log_tile_parts SELECT * FROM fork.log_tile_parts`,
				`DELETE FROM log_checkpoints`, `INSERT INTO log_checkpoints SELECT * FROM fork.log_checkpoints`,
				`DELETE FROM log_state`, `INSERT INTO log_state SELECT * FROM fork.log_state`,
				`DETACH DATABASE fork`)
		},
		want: want{kind: auditverify.KindFork, first: f.earlySize, last: f.size - 1, from: f.times[f.earlySize-1], until: f.finalTime, checkpoint: "witness (latest)"},
	}, {
		name: "rewrite entries and tiles without the key",
		tamper: func(t *testing.T, dir string) {
			// Entries and tiles from a fork signed by another key, the
			// log's own checkpoints left as they were.
			fork := f.buildForkWith(t, forkAt, newKey(t))
			sqlExec(t, dir,
				fmt.Sprintf(`ATTACH DATABASE '%s' AS fork`, filepath.Join(fork, sqlite.FileName)),
				`DELETE FROM log_entries`, `INSERT INTO log_entries SELECT * FROM fork.log_entries`,
				`DELETE FROM log_tile_parts`, `INSERT INTO log_tile_parts SELECT * FROM fork.log_tile_parts`,
				`DETACH DATABASE fork`)
		},
		opts: func(o auditverify.Options) auditverify.Options { o.Checkpoints, o.CheckpointNames = nil, nil; return o },
		want: want{kind: auditverify.KindAltered, checkpoint: "own"},
	}, {
		name:   "bad cosignature",
		tamper: func(t *testing.T, dir string) {},
		opts: func(o auditverify.Options) auditverify.Options {
			o.Checkpoints = [][]byte{o.Checkpoints[0], breakCosignature(t, f.final)}
			return o
		},
		want: want{kind: auditverify.KindBadSignature, first: f.size - 1, last: f.size - 1, until: time.Time{}, checkpoint: "witness (latest)"},
	}, {
		name:   "external checkpoint signed by another key",
		tamper: func(t *testing.T, dir string) {},
		opts: func(o auditverify.Options) auditverify.Options {
			o.Checkpoints = [][]byte{o.Checkpoints[0], signOther(t, f.size+5)}
			return o
		},
		want: want{kind: auditverify.KindBadSignature, first: f.size + 4, last: f.size + 4, checkpoint: "witness (latest)"},
	}, {
		name: "own checkpoint signed by another key",
		tamper: func(t *testing.T, dir string) {
			other := signOther(t, f.earlySize)
			sqlExec(t, dir, fmt.Sprintf(`UPDATE log_checkpoints SET note = x'%x' WHERE size = %d`, other, f.earlySize))
		},
		want: want{kind: auditverify.KindBadSignature, first: f.earlySize - 1, last: f.earlySize - 1, checkpoint: "own"},
	}, {
		name: "damaged chunk",
		tamper: func(t *testing.T, dir string) {
			// The chunk claims two entries but holds one.
			sqlExec(t, dir, fmt.Sprintf(`UPDATE log_entries SET count = 2 WHERE first = %d`, alt))
		},
		want: want{kind: auditverify.KindAltered, first: alt, last: alt, from: f.times[alt-1], until: f.times[alt+1]},
	}, {
		name: "not a canonical event",
		tamper: func(t *testing.T, dir string) {
			e := bytes.Replace(f.entries[alt], []byte(`{"v":1,`), []byte(`{"v":1, `), 1)
			setEntry(t, dir, alt, e)
		},
		want: want{kind: auditverify.KindNotCanonical, first: alt, last: alt, from: f.times[alt-1], until: f.times[alt+1]},
	}, {
		name: "tile interior node",
		tamper: func(t *testing.T, dir string) {
			// Flip a byte of the first interior node of tile 0/1 (the
			// parent of entries 256 and 257), in the tile's first part.
			var data []byte
			var width int
			if err := rawDB(t, dir).QueryRow(`SELECT width, data FROM log_tile_parts WHERE `+partRow(0, 1, 0)).Scan(&width, &data); err != nil {
				t.Fatal(err)
			}
			data[width*32] ^= 1 // the interior rows follow the bottom row
			sqlExec(t, dir, fmt.Sprintf(`UPDATE log_tile_parts SET data = x'%x' WHERE %s`, data, partRow(0, 1, 0)))
		},
		want: want{kind: auditverify.KindTileMismatch, first: 256, last: 257},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := f.clone(t)
			tc.tamper(t, dir)
			opts := witnessed(f)
			if tc.opts != nil {
				opts = tc.opts(opts)
			}
			rep := verify(t, f, dir, opts)
			if tc.want.kind == auditverify.KindAltered && tc.want.first == 0 && tc.want.last == 0 {
				// Only the kind and checkpoint are fixed: the range is
				// between the log's own checkpoints around forkAt.
				p := rep.Problems
				if rep.Intact || p[0].Kind != auditverify.KindAltered || p[0].Checkpoint != "own" || p[0].FirstIndex > forkAt || p[0].LastIndex < forkAt {
					t.Fatalf("want an altered range around %d named by the log's own checkpoint:\n%s", forkAt, rep)
				}
				return
			}
			checkFirst(t, rep, tc.want)
		})
	}
}

// tileRow selects the row of tile level/index in the SQLite schema (a
// tile's row id is level<<56 | index).
// tileRows selects the stored parts of a tile (see internal/store/sqlite).
func tileRows(level uint8, index uint64) string {
	return fmt.Sprintf("id >> 4 = %d", int64(level)<<55|int64(index))
}

// partRow selects one stored part of a tile.
func partRow(level uint8, index uint64, part uint8) string {
	return fmt.Sprintf("id = %d", int64(level)<<59|int64(index)<<4|int64(part))
}

// setEntry rewrites the one-entry chunk holding entry i.
func setEntry(t *testing.T, dir string, i uint64, e []byte) {
	t.Helper()
	var count int
	if err := rawDB(t, dir).QueryRow(`SELECT count FROM log_entries WHERE first = ?`, i).Scan(&count); err != nil || count != 1 {
		t.Fatalf("entry %d is not alone in its chunk (count %d, %v)", i, count, err)
	}
	data := append([]byte{byte(len(e) >> 8), byte(len(e))}, e...)
	sqlExec(t, dir, fmt.Sprintf(`UPDATE log_entries SET data = x'%x' WHERE first = %d`, data, i))
}

func ownCheckpoint(t *testing.T, dir string, size uint64) []byte {
	t.Helper()
	var cp []byte
	if err := rawDB(t, dir).QueryRow(`SELECT note FROM log_checkpoints WHERE size = ?`, size).Scan(&cp); err != nil {
		t.Fatalf("own checkpoint %d: %v", size, err)
	}
	return cp
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// buildFork builds, with the log's own key, a log whose entries from
// index at on are rewritten: what an attacker holding the key could sign.
func (f *fixture) buildFork(t *testing.T, at uint64) string {
	return f.buildForkWith(t, at, f.key)
}

func (f *fixture) buildForkWith(t *testing.T, at uint64, key ed25519.PrivateKey) string {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tl, err := openLog(t.Context(), st, key)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range f.entries {
		if uint64(i) >= at {
			e = bytes.Replace(e, fmt.Appendf(nil, "acc_%04d", i), []byte("acc_0000"), 1)
		}
		if _, err := tl.Append(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := tl.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// breakCosignature corrupts the witness's cosignature in a signed note.
func breakCosignature(t *testing.T, signed []byte) []byte {
	t.Helper()
	lines := bytes.Split(bytes.TrimSuffix(signed, []byte("\n")), []byte("\n"))
	last := lines[len(lines)-1]
	if !bytes.HasPrefix(last, []byte("— "+witnessName+" ")) {
		t.Fatalf("last signature line is %q", last)
	}
	i := bytes.LastIndexByte(last, ' ') + 1
	raw, err := base64.StdEncoding.DecodeString(string(last[i:]))
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 1 // the last byte of the Ed25519 signature
	lines[len(lines)-1] = append(last[:i:i], base64.StdEncoding.EncodeToString(raw)...)
	return append(bytes.Join(lines, []byte("\n")), '\n')
}

// signOther signs a checkpoint of the given size for the log's origin with
// a key that is not the log's.
func signOther(t *testing.T, size uint64) []byte {
	t.Helper()
	s, err := auditlog.NewNoteSigner(origin, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	cp := auditlog.Checkpoint{Origin: origin, Size: size, Hash: auditlog.EmptyRoot()}
	signed, err := note.Sign(&note.Note{Text: string(cp.Marshal())}, s)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// TestPruned checks that a log pruned below some index
// takes the pruned leaf hashes from the tiles and says so, and that a gap
// above the pruning point is still missing.
func TestPruned(t *testing.T) {
	f := getFixture(t)
	dir := f.clone(t)
	const pruneTo = 300
	st, err := sqlite.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PruneEntries(t.Context(), pruneTo); err != nil {
		t.Fatal(err)
	}
	st.Close()
	rep := verify(t, f, dir, witnessed(f))
	if !rep.Intact || rep.Pruned != pruneTo || rep.HashesFromTiles != pruneTo || rep.EntriesChecked != f.size-pruneTo {
		t.Fatalf("pruned log: intact %v, pruned %d, hashes from tiles %d, checked %d\n%s", rep.Intact, rep.Pruned, rep.HashesFromTiles, rep.EntriesChecked, rep)
	}
	if !strings.Contains(rep.String(), "leaf hashes taken from tiles") {
		t.Errorf("text report does not mention pruning:\n%s", rep)
	}
	// Deleting above the pruning point is still caught.
	sqlExec(t, dir, `DELETE FROM log_entries WHERE first = 400`)
	rep = verify(t, f, dir, witnessed(f))
	checkFirst(t, rep, want{kind: auditverify.KindMissing, first: 400, last: 400, from: f.times[399], until: f.times[401]})

	// Pruned entries whose tiles are gone leave checkpoints unchecked.
	// A full level-0 tile is in the tile file beside the database.
	sqlExec(t, dir, `DELETE FROM log_tile_parts WHERE `+tileRows(0, 0))
	if err := os.Truncate(filepath.Join(dir, sqlite.FileName+sqlite.TilesSuffix), 0); err != nil {
		t.Fatal(err)
	}
	rep = verify(t, f, dir, witnessed(f))
	if rep.Intact || rep.Problems[0].Kind != auditverify.KindTileMismatch || rep.CheckpointsUnchecked == 0 {
		t.Errorf("tiles of pruned entries deleted:\n%s", rep)
	}
}

func TestOptions(t *testing.T) {
	f := getFixture(t)
	st, err := sqlite.Open(t.Context(), f.clone(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	other, err := note.NewEd25519VerifierKey("another/log", newKey(t).Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range []auditverify.Options{
		{LogKey: "not a key"},
		{LogKey: other},
		{WitnessKeys: []string{f.vkey}}, // an Ed25519 note key, not a cosignature key
	} {
		if _, err := auditverify.Verify(t.Context(), st, opts); !errors.Is(err, auditverify.ErrInvalidOptions) {
			t.Errorf("Verify(%+v) = %v, want ErrInvalidOptions", opts, err)
		}
	}
	empty, err := sqlite.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	if _, err := auditverify.Verify(t.Context(), empty, auditverify.Options{}); !errors.Is(err, auditverify.ErrNoLog) {
		t.Errorf("Verify(empty database) = %v, want ErrNoLog", err)
	}
}

// TestTamperSegment alters an entry whose bytes are in a segment file beside
// the database, not in it: a log appended in large commits.
func TestTamperSegment(t *testing.T) {
	f := getFixture(t)
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := openLog(t.Context(), st, f.key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tl.AppendAll(t.Context(), f.entries); err != nil {
		t.Fatal(err)
	}
	if err := tl.Close(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	segs, err := filepath.Glob(filepath.Join(dir, sqlite.FileName+sqlite.SegmentsSuffix, "*.seg"))
	if err != nil || len(segs) != 1 {
		t.Fatalf("segment files %v, %v; want one", segs, err)
	}
	if rep := verify(t, f, dir, witnessed(f)); !rep.Intact {
		t.Fatalf("log appended in one commit:\n%s", rep)
	}

	const alt = 300
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, f.entries[alt])
	if at < 0 {
		t.Fatalf("entry %d is not in the segment", alt)
	}
	e := bytes.Replace(f.entries[alt], fmt.Appendf(nil, "acc_%04d", alt), []byte("acc_9999"), 1)
	copy(data[at:], e)
	if err := os.WriteFile(segs[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, f, dir, witnessed(f))
	checkFirst(t, rep, want{kind: auditverify.KindAltered, first: alt, last: alt, from: f.times[alt-1], until: f.times[alt+1]})
}
