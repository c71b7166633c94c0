package auditlog

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Signature type identifier bytes from c2sp.org/signed-note.
const (
	// SigTypeEd25519 identifies ordinary Ed25519 note signatures, which
	// custos's log uses to sign checkpoints.
	SigTypeEd25519 = 0x01
	// SigTypeCosignatureV1 identifies timestamped Ed25519 witness
	// cosignatures (c2sp.org/tlog-cosignature, cosignature/v1).
	SigTypeCosignatureV1 = 0x04
)

// cosignatureSize is the size of a cosignature/v1 timestamped_signature:
// an 8-byte big-endian timestamp and a 64-byte Ed25519 signature.
const cosignatureSize = 8 + ed25519.SignatureSize

// KeyID returns the c2sp.org/signed-note key ID (key hash) of a key:
// the first four bytes, big-endian, of SHA-256(name ‖ "\n" ‖ sigType ‖ pub).
func KeyID(name string, sigType byte, pub []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', sigType})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// ed25519Public returns key's public key if it is Ed25519.
func ed25519Public(key crypto.Signer) (ed25519.PublicKey, error) {
	if key == nil {
		return nil, fmt.Errorf("%w: nil key", ErrInvalid)
	}
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: key is %T, not Ed25519", ErrInvalid, key.Public())
	}
	return pub, nil
}

// noteSigner signs notes with an Ed25519 crypto.Signer.
type noteSigner struct {
	name string
	hash uint32
	sign func(msg []byte) ([]byte, error)
}

func (s *noteSigner) Name() string                    { return s.name }
func (s *noteSigner) KeyHash() uint32                 { return s.hash }
func (s *noteSigner) Sign(msg []byte) ([]byte, error) { return s.sign(msg) }

var _ note.Signer = (*noteSigner)(nil)

// signEd25519 signs msg with an Ed25519 crypto.Signer (pure Ed25519, no
// pre-hash) and checks the signature's length.
func signEd25519(key crypto.Signer, msg []byte) ([]byte, error) {
	sig, err := key.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("auditlog: signing: %w", err)
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("auditlog: signer returned a %d-byte signature, want %d", len(sig), ed25519.SignatureSize)
	}
	return sig, nil
}

// NewNoteSigner returns a note.Signer that makes ordinary Ed25519 note
// signatures (type 0x01) with key, which must be Ed25519. It needs only a
// crypto.Signer, never the private key bytes, so a key held in custody can
// sign checkpoints. Its key hash is the standard one, so
// note.NewVerifier(note.NewEd25519VerifierKey(name, pub)) verifies what it
// signs. name must be a valid key name (non-empty, no spaces, no plus).
func NewNoteSigner(name string, key crypto.Signer) (note.Signer, error) {
	if !isValidKeyName(name) {
		return nil, fmt.Errorf("%w: invalid key name %q", ErrInvalid, name)
	}
	pub, err := ed25519Public(key)
	if err != nil {
		return nil, err
	}
	return &noteSigner{
		name: name,
		hash: KeyID(name, SigTypeEd25519, pub),
		sign: func(msg []byte) ([]byte, error) { return signEd25519(key, msg) },
	}, nil
}

// cosignedMessage returns the cosignature/v1 signed message for checkpoint
// text msg at POSIX time t.
func cosignedMessage(t uint64, msg []byte) []byte {
	b := make([]byte, 0, 40+len(msg))
	b = append(b, "cosignature/v1\ntime "...)
	b = strconv.AppendUint(b, t, 10)
	b = append(b, '\n')
	return append(b, msg...)
}

// NewCosigner returns a note.Signer that makes c2sp.org/tlog-cosignature
// cosignature/v1 signatures (type 0x04) with key, which must be Ed25519.
// Its Sign(msg) requires msg to be checkpoint note text (a cosignature is a
// statement about a checkpoint) and returns the 8-byte big-endian POSIX
// timestamp now() followed by the Ed25519 signature over
// "cosignature/v1\ntime <T>\n" ‖ msg. now must not be nil and must not
// return a time before 1970.
func NewCosigner(name string, key crypto.Signer, now func() time.Time) (note.Signer, error) {
	if !isValidKeyName(name) {
		return nil, fmt.Errorf("%w: invalid key name %q", ErrInvalid, name)
	}
	if now == nil {
		return nil, fmt.Errorf("%w: nil clock", ErrInvalid)
	}
	pub, err := ed25519Public(key)
	if err != nil {
		return nil, err
	}
	return &noteSigner{
		name: name,
		hash: KeyID(name, SigTypeCosignatureV1, pub),
		sign: func(msg []byte) ([]byte, error) {
			if _, err := ParseCheckpoint(msg); err != nil {
				return nil, fmt.Errorf("auditlog: cosigning: %w", err)
			}
			ts := now().Unix()
			if ts < 0 {
				return nil, fmt.Errorf("auditlog: cosigning: time %d is before 1970", ts)
			}
			sig, err := signEd25519(key, cosignedMessage(uint64(ts), msg))
			if err != nil {
				return nil, err
			}
			out := make([]byte, 8, cosignatureSize)
			binary.BigEndian.PutUint64(out, uint64(ts))
			return append(out, sig...), nil
		},
	}, nil
}

// CosignatureVerifierKey returns the verifier key (vkey) of an Ed25519
// cosigner: name+hex(key ID)+base64(0x04 ‖ pub). A pub that is not 32 bytes
// gives a vkey that NewCosignatureVerifier rejects.
func CosignatureVerifierKey(name string, pub ed25519.PublicKey) string {
	key := append([]byte{SigTypeCosignatureV1}, pub...)
	return fmt.Sprintf("%s+%08x+%s", name, KeyID(name, SigTypeCosignatureV1, pub), base64.StdEncoding.EncodeToString(key))
}

// cosigVerifier verifies cosignature/v1 signatures.
type cosigVerifier struct {
	name string
	hash uint32
	pub  ed25519.PublicKey
}

var _ note.Verifier = (*cosigVerifier)(nil)

func (v *cosigVerifier) Name() string    { return v.name }
func (v *cosigVerifier) KeyHash() uint32 { return v.hash }

// Verify reports whether sig is a valid cosignature/v1 timestamped
// signature over checkpoint text msg. Note text that is not a checkpoint
// and timestamps above 2^63-1 are rejected.
func (v *cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != cosignatureSize {
		return false
	}
	ts := binary.BigEndian.Uint64(sig)
	if ts > math.MaxInt64 {
		return false
	}
	if _, err := ParseCheckpoint(msg); err != nil {
		return false
	}
	return ed25519.Verify(v.pub, cosignedMessage(ts, msg), sig[8:])
}

// NewCosignatureVerifier parses a cosigner's verifier key (as made by
// CosignatureVerifierKey) and returns a note.Verifier for its
// cosignature/v1 signatures. The key must name type 0x04 with a 32-byte
// Ed25519 public key, and its key hash must match; anything else matches
// ErrMalformed.
func NewCosignatureVerifier(vkey string) (note.Verifier, error) {
	const format = "verifier key"
	name, rest, ok1 := strings.Cut(vkey, "+")
	hash16, key64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 || !isValidKeyName(name) || len(hash16) != 8 {
		return nil, malformed(format, 0, "not name+hash+key")
	}
	hash, err := strconv.ParseUint(hash16, 16, 32)
	if err != nil {
		return nil, malformed(format, 0, "key hash is not 8 hex digits")
	}
	key, err := base64.StdEncoding.Strict().DecodeString(key64)
	if err != nil || len(key) == 0 {
		return nil, malformed(format, 0, "key is not standard base64")
	}
	if key[0] != SigTypeCosignatureV1 {
		return nil, malformed(format, 0, fmt.Sprintf("signature type 0x%02x, want 0x04 (cosignature/v1)", key[0]))
	}
	if len(key) != 1+ed25519.PublicKeySize {
		return nil, malformed(format, 0, "public key is not 32 bytes")
	}
	pub := ed25519.PublicKey(key[1:])
	if uint32(hash) != KeyID(name, SigTypeCosignatureV1, pub) {
		return nil, malformed(format, 0, "key hash does not match the name and key")
	}
	return &cosigVerifier{name: name, hash: uint32(hash), pub: pub}, nil
}

// CosignatureTime returns the timestamp of a cosignature/v1 signature, as
// found in note.Note.Sigs. It checks the signature's shape (key ID, 8-byte
// timestamp, 64-byte signature, timestamp at most 2^63-1), not its
// validity: read the time only from a signature OpenCheckpoint verified.
func CosignatureTime(sig note.Signature) (time.Time, error) {
	const format = "cosignature"
	raw, err := base64.StdEncoding.DecodeString(sig.Base64)
	if err != nil {
		return time.Time{}, malformed(format, 0, "not standard base64")
	}
	if len(raw) != 4+cosignatureSize {
		return time.Time{}, malformed(format, 0, fmt.Sprintf("%d bytes, want %d", len(raw), 4+cosignatureSize))
	}
	if binary.BigEndian.Uint32(raw) != sig.Hash {
		return time.Time{}, malformed(format, 0, "key ID does not match the signature's key hash")
	}
	ts := binary.BigEndian.Uint64(raw[4:])
	if ts > math.MaxInt64 {
		return time.Time{}, malformed(format, 0, "timestamp above 2^63-1")
	}
	return time.Unix(int64(ts), 0).UTC(), nil
}
