package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// Sealed private keys use envelope encryption, framed as
//
//	"custos-sealed-key/v1\n"
//	uint16 big-endian length ‖ DEK sealed by the Sealer (AAD: dekAAD(kid))
//	24-byte nonce ‖ XChaCha20-Poly1305(DEK, PKCS#8 DER) (AAD: keyAAD(kid, alg))
//
// Each key has its own random 32-byte DEK. Binding the kid into both AADs
// means a sealed blob (or its DEK) copied onto another key's row fails to
// open; binding the algorithm stops an EdDSA row from being relabelled ES256.
const envelopeMagic = "custos-sealed-key/v1\n"

const (
	dekSize         = chacha20poly1305.KeySize
	maxSealedDEK    = 4096     // room for KMS-wrapped DEKs, bounded
	maxEnvelopeSize = 64 << 10 // a PKCS#8 key is a few hundred bytes
)

// envelope is the parsed framing of a sealed private key.
type envelope struct {
	sealedDEK  []byte
	nonce      []byte
	ciphertext []byte
}

// parseEnvelope checks the framing strictly; it does not decrypt.
func parseEnvelope(b []byte) (envelope, error) {
	if len(b) > maxEnvelopeSize {
		return envelope{}, fmt.Errorf("keys: sealed key is %d bytes, over the %d-byte limit: %w", len(b), maxEnvelopeSize, ErrSealBroken)
	}
	rest, ok := bytes.CutPrefix(b, []byte(envelopeMagic))
	if !ok {
		return envelope{}, fmt.Errorf("keys: sealed key is not in %q format: %w", envelopeMagic[:len(envelopeMagic)-1], ErrSealBroken)
	}
	if len(rest) < 2 {
		return envelope{}, fmt.Errorf("keys: sealed key truncated: %w", ErrSealBroken)
	}
	n := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if n == 0 || n > maxSealedDEK || len(rest) < n {
		return envelope{}, fmt.Errorf("keys: sealed key has a bad DEK length: %w", ErrSealBroken)
	}
	e := envelope{sealedDEK: rest[:n:n]}
	rest = rest[n:]
	if len(rest) < chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		return envelope{}, fmt.Errorf("keys: sealed key truncated: %w", ErrSealBroken)
	}
	e.nonce = rest[:chacha20poly1305.NonceSizeX:chacha20poly1305.NonceSizeX]
	e.ciphertext = rest[chacha20poly1305.NonceSizeX:]
	return e, nil
}

func (e envelope) marshal() []byte {
	out := make([]byte, 0, len(envelopeMagic)+2+len(e.sealedDEK)+len(e.nonce)+len(e.ciphertext))
	out = append(out, envelopeMagic...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(e.sealedDEK)))
	out = append(out, e.sealedDEK...)
	out = append(out, e.nonce...)
	return append(out, e.ciphertext...)
}

// aad joins length-prefixed parts under a domain label, so no two distinct
// (kid, alg) pairs produce the same bytes.
func aad(label string, parts ...string) []byte {
	out := []byte(label)
	for _, p := range parts {
		out = binary.BigEndian.AppendUint16(out, uint16(len(p)))
		out = append(out, p...)
	}
	return out
}

func dekAAD(kid string) []byte      { return aad("custos-dek/v1", kid) }
func keyAAD(kid, alg string) []byte { return aad("custos-sealed-key/v1", kid, alg) }

// sealPrivateKey envelope-encrypts der (PKCS#8) for key kid.
func sealPrivateKey(ctx context.Context, s Sealer, kid, alg string, der []byte) ([]byte, error) {
	dek := make([]byte, dekSize)
	defer clear(dek)
	if _, err := rand.Read(dek); err != nil {
		return nil, fmt.Errorf("keys: generate DEK: %w", err)
	}
	sealedDEK, err := s.Seal(ctx, dek, dekAAD(kid))
	if err != nil {
		return nil, fmt.Errorf("keys: seal DEK for key %s: %w", kid, err)
	}
	if len(sealedDEK) == 0 || len(sealedDEK) > maxSealedDEK {
		return nil, fmt.Errorf("keys: sealer %s returned a %d-byte sealed DEK", s.Name(), len(sealedDEK))
	}
	aead, err := chacha20poly1305.NewX(dek)
	if err != nil {
		return nil, fmt.Errorf("keys: seal key %s: %w", kid, err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("keys: seal key %s: %w", kid, err)
	}
	e := envelope{sealedDEK: sealedDEK, nonce: nonce, ciphertext: aead.Seal(nil, nonce, der, keyAAD(kid, alg))}
	return e.marshal(), nil
}

// openPrivateKey reverses sealPrivateKey. The caller must clear the result.
func openPrivateKey(ctx context.Context, s Sealer, kid, alg string, blob []byte) ([]byte, error) {
	e, err := parseEnvelope(blob)
	if err != nil {
		return nil, fmt.Errorf("keys: key %s: %w", kid, err)
	}
	dek, err := s.Open(ctx, e.sealedDEK, dekAAD(kid))
	if err != nil {
		return nil, fmt.Errorf("keys: key %s: open DEK: %w", kid, err)
	}
	defer clear(dek)
	if len(dek) != dekSize {
		return nil, fmt.Errorf("keys: key %s: DEK has the wrong size: %w", kid, ErrSealBroken)
	}
	aead, err := chacha20poly1305.NewX(dek)
	if err != nil {
		return nil, fmt.Errorf("keys: key %s: %w", kid, err)
	}
	der, err := aead.Open(nil, e.nonce, e.ciphertext, keyAAD(kid, alg))
	if err != nil {
		return nil, fmt.Errorf("keys: key %s: open private key: %w", kid, ErrSealBroken)
	}
	return der, nil
}
