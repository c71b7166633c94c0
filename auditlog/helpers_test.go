package auditlog

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// custodySigner is a crypto.Signer that, like a key held in custody,
// exposes only Public and Sign.
type custodySigner struct{ priv ed25519.PrivateKey }

func (s custodySigner) Public() crypto.PublicKey { return s.priv.Public() }
func (s custodySigner) Sign(r io.Reader, msg []byte, o crypto.SignerOpts) ([]byte, error) {
	return s.priv.Sign(r, msg, o)
}

// testKey returns a deterministic Ed25519 key for a seed byte.
func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed
	}
	return ed25519.NewKeyFromSeed(s)
}

const (
	testOrigin  = "custos.example/audit"
	testWitness = "witness.example/w1"
)

var testTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testParty bundles a signer and its verifier.
type testParty struct {
	signer   note.Signer
	verifier note.Verifier
	pub      ed25519.PublicKey
}

func newLogParty(t testing.TB, name string, seed byte) testParty {
	t.Helper()
	k := testKey(seed)
	s, err := NewNoteSigner(name, custodySigner{k})
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := note.NewEd25519VerifierKey(name, k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return testParty{s, v, k.Public().(ed25519.PublicKey)}
}

func newWitnessParty(t testing.TB, name string, seed byte) testParty {
	t.Helper()
	k := testKey(seed)
	s, err := NewCosigner(name, custodySigner{k}, func() time.Time { return testTime })
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewCosignatureVerifier(CosignatureVerifierKey(name, k.Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	return testParty{s, v, k.Public().(ed25519.PublicKey)}
}

// signCheckpoint signs c's text with the signers, in order.
func signCheckpoint(t testing.TB, c Checkpoint, signers ...note.Signer) []byte {
	t.Helper()
	b, err := note.Sign(&note.Note{Text: string(c.Marshal())}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// refTree is a tree built with merkle's compact range, independent of this
// package's hashing: the node hashes at every tile level and the root.
type refTree struct {
	size   uint64
	levels [][]Hash // levels[k] = hashes of complete nodes at tree level 8k
	root   Hash
	roots  []Hash   // roots[i] = compact range root of the first i leaves
	leaves [][]byte // leaf hashes as merkle sees them
}

func buildRefTree(t testing.TB, n uint64) *refTree {
	t.Helper()
	rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := rf.NewEmptyRange(0)
	rt := &refTree{size: n, levels: make([][]Hash, 8)}
	visit := func(id compact.NodeID, h []byte) {
		if id.Level%TileHeight != 0 {
			return
		}
		l := id.Level / TileHeight
		if uint64(len(rt.levels[l])) != id.Index {
			panic(fmt.Sprintf("node %d/%d out of order", id.Level, id.Index))
		}
		rt.levels[l] = append(rt.levels[l], Hash(h))
	}
	rt.roots = append(rt.roots, Hash(rfc6962.DefaultHasher.EmptyRoot()))
	for i := range n {
		lh := rfc6962.DefaultHasher.HashLeaf(fmt.Appendf(nil, "entry %d", i))
		rt.leaves = append(rt.leaves, lh)
		if err := r.Append(lh, visit); err != nil {
			t.Fatal(err)
		}
		root, err := r.GetRootHash(nil)
		if err != nil {
			t.Fatal(err)
		}
		rt.roots = append(rt.roots, Hash(root))
	}
	rt.root = rt.roots[n]
	return rt
}

// tilesAt adds to m the hash tiles of rt's first size entries as a log
// serves them at that size: full tiles and the partial right edge.
func (rt *refTree) tilesAt(m map[string][]byte, size uint64) {
	for l := range uint8(8) {
		for idx := uint64(0); ; idx++ {
			w := TileWidthAt(l, idx, size)
			if w == 0 {
				break
			}
			start := idx * TileWidth
			m[TilePath(l, idx, w)] = AppendHashTile(nil, rt.levels[l][start:start+uint64(w)]...)
		}
	}
}

// memFetcher serves a map of paths; it counts fetches.
type memFetcher struct {
	mu      sync.Mutex
	files   map[string][]byte
	fetches int
}

func (f *memFetcher) Fetch(ctx context.Context, path string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetches++
	b, ok := f.files[path]
	if !ok {
		return nil, fmt.Errorf("%s: %w", path, ErrNotFound)
	}
	return b, nil
}
