package auditlog

import (
	"crypto/sha256"
	"encoding/base64"
)

// HashSize is the size of a Merkle tree hash (SHA-256).
const HashSize = sha256.Size

// A Hash is an RFC 6962 Merkle tree hash: a leaf hash, an interior node
// hash or a tree root.
type Hash [HashSize]byte

// String returns h in standard base64, as checkpoints and proofs write it.
func (h Hash) String() string {
	return base64.StdEncoding.EncodeToString(h[:])
}

// ParseHash decodes a hash written in standard, padded, canonical base64.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if !decodeHash(&h, s) {
		return Hash{}, malformed("hash", 0, "not canonical standard base64 of 32 bytes")
	}
	return h, nil
}

// decodeHash decodes canonical standard base64 of exactly 32 bytes into h.
func decodeHash(h *Hash, s string) bool {
	if len(s) != base64.StdEncoding.EncodedLen(HashSize) {
		return false
	}
	// Strict rejects non-zero padding bits; the length check and the
	// re-encoding reject the '\r' and '\n' the decoder would skip.
	// The buffer has room for the 33 bytes 44 unpadded characters decode to.
	var buf [HashSize + 1]byte
	n, err := base64.StdEncoding.Strict().Decode(buf[:], []byte(s))
	if err != nil || n != HashSize || base64.StdEncoding.EncodeToString(buf[:HashSize]) != s {
		return false
	}
	copy(h[:], buf[:HashSize])
	return true
}

// LeafHash returns the RFC 6962 hash of a log entry: SHA-256(0x00 ‖ entry).
func LeafHash(entry []byte) Hash {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(entry)
	var out Hash
	h.Sum(out[:0])
	return out
}

// NodeHash returns the RFC 6962 hash of an interior node:
// SHA-256(0x01 ‖ left ‖ right).
func NodeHash(left, right Hash) Hash {
	var buf [1 + 2*HashSize]byte
	buf[0] = 1
	copy(buf[1:], left[:])
	copy(buf[1+HashSize:], right[:])
	return sha256.Sum256(buf[:])
}

// EmptyRoot returns the root of the empty tree: SHA-256 of the empty string.
func EmptyRoot() Hash {
	return sha256.Sum256(nil)
}

// MerkleRoot returns the RFC 6962 Merkle tree hash (MTH) of a tree whose
// leaf hashes are leaves. A full tile's hash in the tile level above is
// MerkleRoot of the tile's 256 hashes.
func MerkleRoot(leaves []Hash) Hash {
	if len(leaves) == 0 {
		return EmptyRoot()
	}
	// Fold the perfect subtrees of the compact range [0, n) from the
	// right: the root of the largest power-of-two prefix is hashed with
	// the root of the rest, as RFC 6962 §2.1 splits.
	var (
		root Hash
		have bool
		end  = uint64(len(leaves))
	)
	for end > 0 {
		size := end & -end // lowest set bit: the rightmost perfect subtree
		sub := perfectRoot(leaves[end-size : end])
		if have {
			root = NodeHash(sub, root)
		} else {
			root, have = sub, true
		}
		end -= size
	}
	return root
}

// perfectRoot returns the root of a perfect subtree; len(hs) is a power of
// two.
func perfectRoot(hs []Hash) Hash {
	if len(hs) == 1 {
		return hs[0]
	}
	level := make([]Hash, len(hs)/2)
	for i := range level {
		level[i] = NodeHash(hs[2*i], hs[2*i+1])
	}
	for len(level) > 1 {
		for i := 0; i < len(level)/2; i++ {
			level[i] = NodeHash(level[2*i], level[2*i+1])
		}
		level = level[:len(level)/2]
	}
	return level[0]
}
