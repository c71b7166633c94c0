package auditlog

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

func TestRFC6962Vectors(t *testing.T) {
	if got, want := EmptyRoot(), testonly.EmptyRootHash(); !bytes.Equal(got[:], want) {
		t.Errorf("EmptyRoot() = %x, want %x", got, want)
	}
	nodes := testonly.NodeHashes()
	var leaves []Hash
	for i, in := range testonly.LeafInputs() {
		got := LeafHash(in)
		if !bytes.Equal(got[:], nodes[0][i]) {
			t.Errorf("LeafHash(%x) = %x, want %x", in, got, nodes[0][i])
		}
		leaves = append(leaves, got)
	}
	// Every interior node of the 8-leaf tree from its two children.
	for level := 1; level < len(nodes); level++ {
		for i, want := range nodes[level] {
			got := NodeHash(Hash(nodes[level-1][2*i]), Hash(nodes[level-1][2*i+1]))
			if !bytes.Equal(got[:], want) {
				t.Errorf("NodeHash at level %d index %d = %x, want %x", level, i, got, want)
			}
		}
	}
	for size, want := range testonly.RootHashes() {
		if got := MerkleRoot(leaves[:size]); !bytes.Equal(got[:], want) {
			t.Errorf("MerkleRoot of %d leaves = %x, want %x", size, got, want)
		}
	}
}

func TestMerkleRootMatchesCompactRange(t *testing.T) {
	for _, n := range []uint64{1, 2, 3, 5, 255, 256, 257, 1000, 1023, 1024, 1025} {
		rt := buildRefTree(t, n)
		leaves := make([]Hash, n)
		for i, l := range rt.leaves {
			leaves[i] = Hash(l)
		}
		if got := MerkleRoot(leaves); got != rt.root {
			t.Errorf("MerkleRoot of %d leaves = %v, want %v", n, got, rt.root)
		}
	}
}

func TestHashMatchesMerkleHasher(t *testing.T) {
	l, r := LeafHash([]byte("left")), LeafHash([]byte("right"))
	if want := rfc6962.DefaultHasher.HashLeaf([]byte("left")); !bytes.Equal(l[:], want) {
		t.Errorf("LeafHash = %x, want %x", l, want)
	}
	n := NodeHash(l, r)
	if want := rfc6962.DefaultHasher.HashChildren(l[:], r[:]); !bytes.Equal(n[:], want) {
		t.Errorf("NodeHash = %x, want %x", n, want)
	}
	if NodeHash(r, l) == n {
		t.Error("NodeHash is symmetric")
	}
}

func TestHashString(t *testing.T) {
	raw, _ := hex.DecodeString("0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62")
	h := Hash(raw)
	// The root hash of the example checkpoint in c2sp.org/tlog-checkpoint.
	const want = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
	if got := h.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	back, err := ParseHash(want)
	if err != nil || back != h {
		t.Errorf("ParseHash(%q) = %v, %v", want, back, err)
	}
}

func TestParseHashRejects(t *testing.T) {
	for _, s := range []string{
		"",
		"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I",    // unpadded
		"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=",   // non-zero padding bits
		"CsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=",   // URL alphabet
		"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2Ia",   // 33 bytes, no padding
		"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I==",  // too long
		"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq\r2I=", // decoder skips CR
		"AAAA",
	} {
		if _, err := ParseHash(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseHash(%q) error = %v, want ErrMalformed", s, err)
		}
	}
}
