package verify

import (
	"context"
	"crypto"
	"errors"
)

// Key is a public verification key as a KeySet hands it out.
type Key struct {
	ID        string           // kid
	Algorithm string           // "EdDSA" or "ES256": the only algorithm this key verifies
	Public    crypto.PublicKey // ed25519.PublicKey or *ecdsa.PublicKey (P-256)
}

// KeySet finds the key a token names. Implementations return an error
// wrapping ErrUnknownKey when they don't know kid, and ErrRevokedKey when the
// key was revoked: its tokens must be refused at once.
type KeySet interface {
	LookupKey(ctx context.Context, kid string) (Key, error)
}

var (
	// ErrUnknownKey means the key set has no key with the token's kid.
	ErrUnknownKey = errors.New("verify: unknown key id")
	// ErrRevokedKey means the token's key was revoked.
	ErrRevokedKey = errors.New("verify: key revoked")
)
