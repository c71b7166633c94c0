package tlog_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/store/sqlite"
	"github.com/custos-dev/custos/internal/tlog"
)

const origin = "custos.test/audit"

type fixture struct {
	dir      string
	key      ed25519.PrivateKey
	verifier note.Verifier
	st       *sqlite.Store
	log      *tlog.Log
	cps      chan auditlog.Checkpoint
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: t.TempDir(), key: key}
	f.verifier, err = note.NewVerifier(mustVKey(t, key))
	if err != nil {
		t.Fatal(err)
	}
	f.open(t)
	t.Cleanup(func() { f.close(t) })
	return f
}

func mustVKey(t testing.TB, key ed25519.PrivateKey) string {
	t.Helper()
	vkey, err := note.NewEd25519VerifierKey(origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return vkey
}

func (f *fixture) config(t testing.TB) tlog.Config {
	t.Helper()
	signer, err := auditlog.NewNoteSigner(origin, f.key)
	if err != nil {
		t.Fatal(err)
	}
	f.cps = make(chan auditlog.Checkpoint, 1024)
	return tlog.Config{
		Origin:             origin,
		Key:                signer,
		Verifier:           f.verifier,
		CheckpointFile:     filepath.Join(f.dir, "checkpoint"),
		CheckpointInterval: 5 * time.Millisecond,
		OnCheckpoint: func(_ []byte, cp auditlog.Checkpoint) {
			select {
			case f.cps <- cp:
			default:
			}
		},
	}
}

func (f *fixture) open(t testing.TB) {
	t.Helper()
	if err := f.tryOpen(t); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) tryOpen(t testing.TB) error {
	t.Helper()
	st, err := sqlite.Open(t.Context(), f.dir)
	if err != nil {
		return err
	}
	l, err := tlog.Open(t.Context(), st, f.config(t))
	if err != nil {
		st.Close()
		return err
	}
	f.st, f.log = st, l
	return nil
}

func (f *fixture) close(t testing.TB) {
	t.Helper()
	if f.log == nil {
		return
	}
	if err := f.log.Close(); err != nil {
		t.Error(err)
	}
	if err := f.st.Close(); err != nil {
		t.Error(err)
	}
	f.log, f.st = nil, nil
}

// waitSize waits until the log's checkpoint covers size entries.
func (f *fixture) waitSize(t testing.TB, size uint64) auditlog.Checkpoint {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if _, cp := f.log.Checkpoint(); cp.Size >= size {
			return cp
		}
		select {
		case <-f.cps:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			_, cp := f.log.Checkpoint()
			t.Fatalf("checkpoint stuck at %d, want %d", cp.Size, size)
		}
	}
}

func entry(i int) []byte { return fmt.Appendf(nil, `{"n":%d,"pad":"%0*d"}`, i, i%300, 0) }

// appendAll appends entries [from, to) from several goroutines and checks
// every index is returned exactly once.
func appendAll(t *testing.T, l *tlog.Log, from, to int) map[uint64][]byte {
	t.Helper()
	var mu sync.Mutex
	got := make(map[uint64][]byte)
	var wg sync.WaitGroup
	const workers = 16
	for w := range workers {
		wg.Go(func() {
			for i := from + w; i < to; i += workers {
				e := entry(i)
				idx, err := l.Append(t.Context(), e)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if _, dup := got[idx]; dup {
					t.Errorf("index %d returned twice", idx)
				}
				got[idx] = e
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return got
}

func rootOf(t *testing.T, leaves [][]byte) []byte {
	t.Helper()
	f := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := f.NewEmptyRange(0)
	for _, l := range leaves {
		if err := r.Append(rfc6962.DefaultHasher.HashLeaf(l), nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(leaves) == 0 {
		return rfc6962.DefaultHasher.EmptyRoot()
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func toBytes(hs []auditlog.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

func TestAppendIntegrateProve(t *testing.T) {
	f := newFixture(t)
	const n = 1500 // several full tiles and bundles, and a partial one
	got := appendAll(t, f.log, 0, n)
	if len(got) != n {
		t.Fatalf("%d indexes, want %d", len(got), n)
	}
	leaves := make([][]byte, n)
	for i := range uint64(n) {
		e, ok := got[i]
		if !ok {
			t.Fatalf("index %d missing", i)
		}
		leaves[i] = e
	}
	cp := f.waitSize(t, n)
	if cp.Size != n || cp.Origin != origin {
		t.Fatalf("checkpoint %+v", cp)
	}
	if want := rootOf(t, leaves); string(cp.Hash[:]) != string(want) {
		t.Fatalf("root %x, want %x", cp.Hash, want)
	}
	signed, _ := f.log.Checkpoint()
	if _, _, err := auditlog.OpenCheckpoint(signed, f.verifier); err != nil {
		t.Fatalf("checkpoint does not verify: %v", err)
	}
	for _, i := range []uint64{0, 1, 255, 256, 511, 1000, n - 1} {
		p, err := f.log.InclusionProof(t.Context(), i, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, n, rfc6962.DefaultHasher.HashLeaf(leaves[i]), toBytes(p), cp.Hash[:]); err != nil {
			t.Errorf("inclusion of %d: %v", i, err)
		}
	}
	for _, old := range []uint64{1, 2, 255, 256, 257, 1024, n - 1, n} {
		p, err := f.log.ConsistencyProof(t.Context(), old, n)
		if err != nil {
			t.Fatal(err)
		}
		oldRoot := rootOf(t, leaves[:old])
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old, n, toBytes(p), oldRoot, cp.Hash[:]); err != nil {
			t.Errorf("consistency %d→%d: %v", old, n, err)
		}
	}
	if _, err := f.log.InclusionProof(t.Context(), 0, n+1); err == nil {
		t.Error("proof for a size beyond the checkpoint was given")
	}
	// Entries are stored in order.
	stored, err := f.log.Entries(t.Context(), 0, n)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range stored {
		if string(e) != string(leaves[i]) {
			t.Fatalf("entry %d differs", i)
		}
	}
}

func TestRestartContinuesConsistently(t *testing.T) {
	f := newFixture(t)
	var leaves [][]byte
	for round := range 4 {
		from := len(leaves)
		got := appendAll(t, f.log, from, from+100+round*97)
		for i := uint64(from); i < uint64(from+len(got)); i++ {
			leaves = append(leaves, got[i])
		}
		before := f.waitSize(t, uint64(len(leaves)))
		f.close(t)
		f.open(t)
		_, after := f.log.Checkpoint()
		if after.Size != before.Size || after.Hash != before.Hash {
			t.Fatalf("round %d: checkpoint after restart %+v, before %+v", round, after, before)
		}
	}
	if cp, want := f.waitSize(t, uint64(len(leaves))), rootOf(t, leaves); string(cp.Hash[:]) != string(want) {
		t.Fatal("root after restarts differs from the entries' root")
	}
}

// A crash between a commit and its integration leaves entries sequenced but
// not in the tree; Open integrates them.
func TestOpenIntegratesLeftoverEntries(t *testing.T) {
	f := newFixture(t)
	appendAll(t, f.log, 0, 300)
	f.waitSize(t, 300)
	f.close(t)

	st, err := sqlite.Open(t.Context(), f.dir)
	if err != nil {
		t.Fatal(err)
	}
	// Entries 300..310 as the sequencer would have stored them.
	var data []byte
	for i := 300; i < 310; i++ {
		if data, err = auditlog.AppendEntryBundle(data, entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Sequence(t.Context(), store.Chunk{First: 300, Count: 10, Data: data}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	f.open(t)
	if _, cp := f.log.Checkpoint(); cp.Size != 310 {
		t.Fatalf("after open the checkpoint has %d entries, want 310", cp.Size)
	}
	idx, err := f.log.Append(t.Context(), entry(310))
	if err != nil || idx != 310 {
		t.Fatalf("append after recovery: %d, %v", idx, err)
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.OpenFile(filepath.Join(dst, e.Name()), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		out.Close()
	}
}

// Restoring an older copy of the database under a newer checkpoint file is
// refused: the log would otherwise sign a fork.
func TestRestoredOlderDatabaseIsRefused(t *testing.T) {
	f := newFixture(t)
	appendAll(t, f.log, 0, 200)
	f.waitSize(t, 200)
	f.close(t)
	backup := filepath.Join(t.TempDir(), "backup")
	copyDir(t, f.dir, backup)

	f.open(t)
	appendAll(t, f.log, 200, 300)
	f.waitSize(t, 300)
	f.close(t)

	// Restore the database files, keep the newer checkpoint file.
	for _, name := range []string{sqlite.FileName, sqlite.FileName + "-wal", sqlite.FileName + "-shm"} {
		os.Remove(filepath.Join(f.dir, name))
		if b, err := os.ReadFile(filepath.Join(backup, name)); err == nil {
			if err := os.WriteFile(filepath.Join(f.dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	err := f.tryOpen(t)
	if !errors.Is(err, tlog.ErrRolledBack) {
		t.Fatalf("open on a restored database: %v, want ErrRolledBack", err)
	}
}

func TestAppendRefusesOversizeAndAfterClose(t *testing.T) {
	f := newFixture(t)
	if _, err := f.log.Append(t.Context(), make([]byte, tlog.MaxEntrySize+1)); !errors.Is(err, tlog.ErrEntryTooLarge) {
		t.Fatalf("oversize entry: %v", err)
	}
	if _, err := f.log.Append(t.Context(), make([]byte, tlog.MaxEntrySize)); err != nil {
		t.Fatalf("largest entry: %v", err)
	}
	l := f.log
	f.close(t)
	if _, err := l.Append(context.Background(), []byte("late")); !errors.Is(err, tlog.ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

// AppendAll stores its entries in order, next to each other, while other
// appends run beside it.
func TestAppendAllKeepsEntriesTogether(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			if _, err := f.log.Append(t.Context(), entry(1000+i)); err != nil {
				t.Error(err)
			}
		})
	}
	var batch [][]byte
	for i := range 300 {
		batch = append(batch, entry(i))
	}
	first, err := f.log.AppendAll(t.Context(), batch)
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	got, err := f.log.Entries(t.Context(), first, first+uint64(len(batch)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range batch {
		if string(got[i]) != string(batch[i]) {
			t.Fatalf("entry %d of the batch is %q at index %d", i, got[i], first+uint64(i))
		}
	}
	if _, err := f.log.AppendAll(t.Context(), nil); err == nil {
		t.Error("AppendAll of nothing succeeded")
	}
	if _, err := f.log.AppendAll(t.Context(), [][]byte{entry(1), make([]byte, tlog.MaxEntrySize+1)}); !errors.Is(err, tlog.ErrEntryTooLarge) {
		t.Errorf("AppendAll with an oversize entry: %v", err)
	}
	if cp := f.waitSize(t, 350); cp.Size != 350 {
		t.Errorf("log size %d after the refused AppendAll, want 350", cp.Size)
	}
}

// A commit larger than an entry bundle (the sequencer takes everything
// queued) reads back whole, at start and through entry bundles.
func TestLargeCommitsReadBack(t *testing.T) {
	f := newFixture(t)
	appendAll(t, f.log, 0, 10)
	f.waitSize(t, 10)
	f.close(t)

	st, err := sqlite.Open(t.Context(), f.dir)
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	const big = 1000
	for i := 10; i < 10+big; i++ {
		if data, err = auditlog.AppendEntryBundle(data, entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Sequence(t.Context(), store.Chunk{First: 10, Count: big, Data: data}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	f.open(t) // integrates the chunk
	if _, cp := f.log.Checkpoint(); cp.Size != 10+big {
		t.Fatalf("checkpoint size %d, want %d", cp.Size, 10+big)
	}
	got, err := f.log.Entries(t.Context(), 5, 10+big)
	if err != nil || len(got) != 5+big {
		t.Fatalf("read back %d entries: %v", len(got), err)
	}
	for i, e := range got[5:] {
		if string(e) != string(entry(10+i)) {
			t.Fatalf("entry %d differs", 10+i)
		}
	}
}

// Two logs over one database (a server and the CLI beside it) and appends
// made inside other transactions (a grant's events) all land, each once,
// and both logs sign checkpoints of the same tree.
func TestSharedStoreAppenders(t *testing.T) {
	f := newFixture(t)
	st2, err := sqlite.Open(t.Context(), f.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	cfg := f.config(t)
	cfg.CheckpointFile = ""
	l2, err := tlog.Open(t.Context(), st2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { appendAll(t, f.log, 0, 300) })
	wg.Go(func() { appendAll(t, l2, 300, 600) })
	wg.Go(func() {
		for i := 600; i < 700; i++ {
			data, _ := auditlog.AppendEntryBundle(nil, entry(i))
			if _, err := f.st.AppendChunk(t.Context(), 1, data); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	cp := f.waitSize(t, 700)
	stored, err := f.log.Entries(t.Context(), 0, 700)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range stored {
		if seen[string(e)] {
			t.Fatalf("entry %s stored twice", e)
		}
		seen[string(e)] = true
	}
	for i := range 700 {
		if !seen[string(entry(i))] {
			t.Fatalf("entry %d missing", i)
		}
	}
	if want := rootOf(t, stored); string(cp.Hash[:]) != string(want) {
		t.Fatal("the checkpoint's root is not the stored entries' root")
	}
}
