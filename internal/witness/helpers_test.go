package witness_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store/sqlite"
	"github.com/custos-dev/custos/internal/witness"
)

const (
	logOrigin   = "log.example/audit"
	witnessName = "witness.example/w1"
)

// testLog is a log made in memory: a Merkle tree and the key that signs
// its checkpoints.
type testLog struct {
	origin   string
	key      ed25519.PrivateKey
	signer   note.Signer
	verifier note.Verifier
	tree     *testonly.Tree
}

func newTestLog(t testing.TB, origin string) *testLog {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return newTestLogWithKey(t, origin, key)
}

// newTestLogWithKey returns a log signed with key: two of them with one
// key are a log that forked.
func newTestLogWithKey(t testing.TB, origin string, key ed25519.PrivateKey) *testLog {
	t.Helper()
	signer, err := auditlog.NewNoteSigner(origin, key)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := note.NewEd25519VerifierKey(origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{origin: origin, key: key, signer: signer, verifier: v, tree: testonly.New(rfc6962.DefaultHasher)}
}

// grow appends n entries, each tagged with tag.
func (l *testLog) grow(n int, tag string) *testLog {
	for range n {
		l.tree.AppendData(fmt.Appendf(nil, "%s entry %d", tag, l.tree.Size()))
	}
	return l
}

func (l *testLog) at(size uint64) auditlog.Checkpoint {
	return auditlog.Checkpoint{Origin: l.origin, Size: size, Hash: auditlog.Hash(l.tree.HashAt(size))}
}

// signed returns the checkpoint at size signed by the log's key and any
// further signers.
func (l *testLog) signed(t testing.TB, size uint64, more ...note.Signer) []byte {
	t.Helper()
	b, err := note.Sign(&note.Note{Text: string(l.at(size).Marshal())}, append([]note.Signer{l.signer}, more...)...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (l *testLog) proof(t testing.TB, older, newer uint64) []auditlog.Hash {
	t.Helper()
	p, err := l.tree.ConsistencyProof(older, newer)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]auditlog.Hash, len(p))
	for i, h := range p {
		out[i] = auditlog.Hash(h)
	}
	return out
}

// request is an add-checkpoint request from older to the log's checkpoint
// at newer.
func (l *testLog) request(t testing.TB, older, newer uint64) witness.Request {
	return witness.Request{OldSize: older, Proof: l.proof(t, older, newer), Checkpoint: l.signed(t, newer)}
}

// ConsistencyProof makes testLog a witness.Proofs.
func (l *testLog) ConsistencyProof(_ context.Context, older, newer uint64) ([]auditlog.Hash, error) {
	p, err := l.tree.ConsistencyProof(older, newer)
	if err != nil {
		return nil, err
	}
	out := make([]auditlog.Hash, len(p))
	for i, h := range p {
		out[i] = auditlog.Hash(h)
	}
	return out, nil
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// witnessFixture is a witness over a fresh SQLite store.
type witnessFixture struct {
	w     *witness.Witness
	st    *sqlite.Store
	key   ed25519.PrivateKey
	clock *clock
	self  note.Verifier
}

func newWitness(t testing.TB, logs ...*testLog) *witnessFixture {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &witnessFixture{st: st, key: key, clock: newClock()}
	cfg := witness.Config{Name: witnessName, Now: f.clock.Now}
	for _, l := range logs {
		cfg.Logs = append(cfg.Logs, witness.Log{Verifier: l.verifier})
	}
	if f.w, err = witness.New(st, key, cfg); err != nil {
		t.Fatal(err)
	}
	if f.self, err = auditlog.NewCosignatureVerifier(f.w.VerifierKey()); err != nil {
		t.Fatal(err)
	}
	return f
}
