package auditlog

import (
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

func hx(t testing.TB, s string) Hash {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != HashSize {
		t.Fatalf("bad hex hash %q", s)
	}
	return Hash(b)
}

func vectorCheckpoint(size uint64) Checkpoint {
	return Checkpoint{Origin: testOrigin, Size: size, Hash: Hash(testonly.RootHashes()[size])}
}

// The RFC 6962 inclusion and consistency proof vectors of the Certificate
// Transparency implementation, over the tree of testonly.LeafInputs.
func TestRFC6962ProofVectors(t *testing.T) {
	leaves := testonly.LeafInputs()
	inclusion := []struct {
		index, size uint64
		path        []string
	}{
		{0, 1, nil},
		{0, 8, []string{
			"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
			"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
			"6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
		}},
		{5, 8, []string{
			"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
			"ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
			"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		}},
		{2, 3, []string{"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
		{1, 5, []string{
			"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
			"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
			"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
		}},
	}
	for _, v := range inclusion {
		t.Run(fmt.Sprintf("inclusion/%d/%d", v.index, v.size), func(t *testing.T) {
			var path []Hash
			for _, s := range v.path {
				path = append(path, hx(t, s))
			}
			cp := vectorCheckpoint(v.size)
			leaf := LeafHash(leaves[v.index])
			if err := VerifyInclusion(cp, v.index, leaf, path); err != nil {
				t.Fatal(err)
			}
			// The wrong leaf, the wrong index, a truncated path and a
			// flipped bit in every path hash all fail.
			if err := VerifyInclusion(cp, v.index, LeafHash([]byte("other")), path); !errors.Is(err, ErrProof) {
				t.Errorf("wrong leaf: %v", err)
			}
			if v.size > 1 {
				other := (v.index + 1) % v.size
				if err := VerifyInclusion(cp, other, leaf, path); !errors.Is(err, ErrProof) {
					t.Errorf("wrong index: %v", err)
				}
			}
			if len(path) > 0 {
				if err := VerifyInclusion(cp, v.index, leaf, path[:len(path)-1]); !errors.Is(err, ErrProof) {
					t.Errorf("truncated path: %v", err)
				}
			}
			for i := range path {
				bad := append([]Hash(nil), path...)
				bad[i][7] ^= 1
				err := VerifyInclusion(cp, v.index, leaf, bad)
				ie, ok := errors.AsType[*InclusionError](err)
				if !ok || ie.Index != v.index || ie.Size != v.size {
					t.Errorf("flipped path[%d]: %v", i, err)
				}
			}
		})
	}

	consistency := []struct {
		size1, size2 uint64
		proof        []string
	}{
		{1, 1, nil},
		{1, 8, []string{
			"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
			"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
			"6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
		}},
		{6, 8, []string{
			"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
			"ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
			"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		}},
		{2, 5, []string{
			"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
			"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
		}},
		{6, 7, []string{
			"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
			"b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
			"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		}},
	}
	for _, v := range consistency {
		t.Run(fmt.Sprintf("consistency/%d/%d", v.size1, v.size2), func(t *testing.T) {
			var p []Hash
			for _, s := range v.proof {
				p = append(p, hx(t, s))
			}
			older, newer := vectorCheckpoint(v.size1), vectorCheckpoint(v.size2)
			if err := VerifyConsistency(older, newer, p); err != nil {
				t.Fatal(err)
			}
			for i := range p {
				bad := append([]Hash(nil), p...)
				bad[i][0] ^= 0x80
				err := VerifyConsistency(older, newer, bad)
				ce, ok := errors.AsType[*ConsistencyError](err)
				if !ok || ce.OldSize != v.size1 || ce.NewSize != v.size2 {
					t.Errorf("flipped proof[%d]: %v", i, err)
				}
			}
			forked := newer
			forked.Hash[31] ^= 1
			if err := VerifyConsistency(older, forked, p); !errors.Is(err, ErrProof) {
				t.Errorf("forked newer root: %v", err)
			}
		})
	}
}

// Every inclusion and consistency proof over the 8-leaf vector tree, as
// merkle's reference tree makes them, verifies.
func TestAllProofsOfVectorTree(t *testing.T) {
	tree := testonly.New(rfc6962.DefaultHasher)
	tree.AppendData(testonly.LeafInputs()...)
	for size := uint64(1); size <= 8; size++ {
		cp := vectorCheckpoint(size)
		for i := range size {
			p, err := tree.InclusionProof(i, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyInclusion(cp, i, Hash(tree.LeafHash(i)), bytesToHashes(p)); err != nil {
				t.Errorf("inclusion %d/%d: %v", i, size, err)
			}
		}
		for old := uint64(0); old <= size; old++ {
			p, err := tree.ConsistencyProof(old, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyConsistency(vectorCheckpoint(old), cp, bytesToHashes(p)); err != nil {
				t.Errorf("consistency %d→%d: %v", old, size, err)
			}
		}
	}
}

func bytesToHashes(bs [][]byte) []Hash {
	out := make([]Hash, len(bs))
	for i, b := range bs {
		out[i] = Hash(b)
	}
	return out
}

func TestVerifyConsistencyRejects(t *testing.T) {
	h := func(s string) Hash { return LeafHash([]byte(s)) }
	c := func(origin string, size uint64, hash Hash) Checkpoint {
		return Checkpoint{Origin: origin, Size: size, Hash: hash}
	}
	v5, v8 := vectorCheckpoint(5), vectorCheckpoint(8)
	tree := testonly.New(rfc6962.DefaultHasher)
	tree.AppendData(testonly.LeafInputs()...)
	p58, _ := tree.ConsistencyProof(5, 8)
	tests := []struct {
		name         string
		older, newer Checkpoint
		proof        []Hash
	}{
		{"different origins", v5, c("other.example/log", 8, v8.Hash), bytesToHashes(p58)},
		{"older larger", v8, v5, bytesToHashes(p58)},
		{"same size, different hashes", c(testOrigin, 3, h("a")), c(testOrigin, 3, h("b")), nil},
		{"same size, non-empty proof", v5, v5, []Hash{h("x")}},
		{"empty older with wrong root", c(testOrigin, 0, h("a")), v8, nil},
		{"empty newer with wrong root", c(testOrigin, 0, EmptyRoot()), c(testOrigin, 0, h("a")), nil},
		{"from empty with non-empty proof", c(testOrigin, 0, EmptyRoot()), v8, []Hash{h("x")}},
		{"empty proof", v5, v8, nil},
		{"proof too long", v5, v8, append(bytesToHashes(p58), h("x"))},
		{"wrong older root", c(testOrigin, 5, h("a")), v8, bytesToHashes(p58)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyConsistency(tt.older, tt.newer, tt.proof)
			ce, ok := errors.AsType[*ConsistencyError](err)
			if !ok || !errors.Is(err, ErrProof) {
				t.Fatalf("error = %v, want *ConsistencyError", err)
			}
			if ce.OldSize != tt.older.Size || ce.NewSize != tt.newer.Size {
				t.Errorf("sizes = %d, %d", ce.OldSize, ce.NewSize)
			}
		})
	}
	// The accepted edge cases.
	if err := VerifyConsistency(c(testOrigin, 0, EmptyRoot()), v8, nil); err != nil {
		t.Errorf("from empty: %v", err)
	}
	if err := VerifyConsistency(v5, v5, nil); err != nil {
		t.Errorf("same checkpoint: %v", err)
	}
	if err := VerifyConsistency(v5, v8, bytesToHashes(p58)); err != nil {
		t.Errorf("5→8: %v", err)
	}
}

func TestVerifyInclusionIndexOutOfRange(t *testing.T) {
	for _, cp := range []Checkpoint{vectorCheckpoint(0), vectorCheckpoint(3)} {
		err := VerifyInclusion(cp, cp.Size, LeafHash(nil), nil)
		if ie, ok := errors.AsType[*InclusionError](err); !ok || ie.Index != cp.Size {
			t.Errorf("size %d: error = %v, want *InclusionError", cp.Size, err)
		}
	}
}

// benchInclusion returns a checkpoint of a 2^24-entry tree and a valid
// inclusion proof of one entry in it.
func benchInclusion(b *testing.B) (Checkpoint, uint64, Hash, []Hash) {
	const size = 1 << 24
	const index = 0xa5a5a5
	path := make([]Hash, 24)
	for i := range path {
		path[i] = LeafHash(fmt.Appendf(nil, "sibling %d", i))
	}
	leaf := LeafHash([]byte("entry"))
	root, err := proof.RootFromInclusionProof(rfc6962.DefaultHasher, index, size, leaf[:], hashSlices(path))
	if err != nil {
		b.Fatal(err)
	}
	cp := Checkpoint{Origin: testOrigin, Size: size, Hash: Hash(root)}
	if err := VerifyInclusion(cp, index, leaf, path); err != nil {
		b.Fatal(err)
	}
	return cp, index, leaf, path
}

func BenchmarkVerifyInclusion(b *testing.B) {
	cp, index, leaf, path := benchInclusion(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := VerifyInclusion(cp, index, leaf, path); err != nil {
			b.Fatal(err)
		}
	}
}
