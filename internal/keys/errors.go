package keys

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Functions wrap them with context; match with errors.Is.
var (
	// ErrInvalidConfig means Config failed validation; the error is a *ConfigError.
	ErrInvalidConfig = errors.New("keys: invalid configuration")
	// ErrWrongRootKey means a key was sealed under a different root key than
	// the one this custos holds; the error is a *RootKeyMismatchError.
	ErrWrongRootKey = errors.New("keys: sealed under a different root key")
	// ErrSealBroken means a sealed blob failed authentication or framing: it
	// was tampered with, truncated, or moved from another key.
	ErrSealBroken = errors.New("keys: sealed data is corrupt or was tampered with")
	// ErrNoActiveKey means custody has no key that may sign.
	ErrNoActiveKey = errors.New("keys: no active signing key")
	// ErrNotPublishedLongEnough means a normal rotation was refused because
	// the pending key has not been published for Config.PublishLead yet; the
	// error is a *NotReadyError.
	ErrNotPublishedLongEnough = errors.New("keys: pending key not published long enough")
	// ErrNoPendingKey means there is no pending key to promote.
	ErrNoPendingKey = errors.New("keys: no pending key")
	// ErrUnsupportedKey means an imported key is not an Ed25519 or P-256
	// private key in PKCS#8 or SEC 1 PEM.
	ErrUnsupportedKey = errors.New("keys: unsupported key")
	// ErrKeyRevoked means a SigningKey was used after its key was revoked.
	ErrKeyRevoked = errors.New("keys: key revoked")
)

// ConfigError reports which Config field is invalid and why.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("keys: invalid configuration: %s: %s", e.Field, e.Reason)
}

func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// RootKeyMismatchError reports a key sealed by another root key than the one
// this custos was started with: usually the wrong data directory, root key
// file or environment variable.
type RootKeyMismatchError struct {
	KeyID    string // the key that cannot be opened
	SealedBy string // Sealer.Name recorded with the key
	Have     string // Sealer.Name of the sealer this custos holds
}

func (e *RootKeyMismatchError) Error() string {
	return fmt.Sprintf("keys: key %s was sealed by root key %s; this custos has root key %s", e.KeyID, e.SealedBy, e.Have)
}

func (e *RootKeyMismatchError) Unwrap() error { return ErrWrongRootKey }

// NotReadyError reports a pending key that may not sign yet.
type NotReadyError struct {
	KeyID      string
	CreatedAt  time.Time // published since
	ActivateAt time.Time // earliest time it may sign
	Now        time.Time
}

func (e *NotReadyError) Error() string {
	return fmt.Sprintf("keys: pending key %s has been published since %s; verifiers may not have fetched it yet, it may sign from %s (in %s); revoke the active key for an emergency rotation",
		e.KeyID, e.CreatedAt.UTC().Format(time.RFC3339), e.ActivateAt.UTC().Format(time.RFC3339), e.ActivateAt.Sub(e.Now).Round(time.Second))
}

func (e *NotReadyError) Unwrap() error { return ErrNotPublishedLongEnough }
