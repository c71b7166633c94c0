package keys

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/verify"
)

// Store keeps signing keys. Rows are never deleted and kids never reused.
type Store interface {
	// InsertKey adds k; it fails with an error wrapping store.ErrConflict if
	// a key with k.ID exists, whatever its state.
	InsertKey(ctx context.Context, k store.Key) error
	// Keys returns every key, oldest first.
	Keys(ctx context.Context) ([]store.Key, error)
	// UpdateKey writes k's State, ActivateAt, ActivatedAt, RetiredAt,
	// RevokedAt, PublishUntil and Note (and, when k is revoked, destroys its
	// sealed private key), only if the stored key's state is still from; otherwise it fails with an error wrapping
	// store.ErrConflict (store.ErrNotFound if there is no such key). It is
	// a compare-and-swap: nodes sharing a store never apply one transition
	// twice.
	UpdateKey(ctx context.Context, k store.Key, from store.KeyState) error
	// DestroySealedKey overwrites the sealed private key of a retired key,
	// leaving its public key and history. It fails with an error wrapping
	// store.ErrConflict if the key is not retired; destroying twice is not
	// an error.
	DestroySealedKey(ctx context.Context, kid string) error
	// OffboardCustodian records that a custodian has left; a second time
	// it fails with an error wrapping store.ErrConflict.
	OffboardCustodian(ctx context.Context, o store.Offboarding) error
	// OffboardedCustodians returns every custodian who has left.
	OffboardedCustodians(ctx context.Context) ([]store.Offboarding, error)
}

// Event types custody emits, all of class event.ClassKey. Fields of the
// key events: kid, alg, state, reason, imported, custodian, and where they
// apply activate_at, publish_until, previous_state, emergency.
// custodian_offboarded has custodian, reason, keys (how many keys the
// custodian holds) and revoked (how many of them it revoked).
const (
	EventKeyCreated          = "key_created"
	EventKeyActivated        = "key_activated"
	EventKeyRetired          = "key_retired"
	EventKeyRevoked          = "key_revoked"
	EventKeyImported         = "key_imported"
	EventKeyUnpublished      = "key_unpublished"
	EventCustodianOffboarded = "custodian_offboarded"
)

// Custody holds the signing keys. It is safe for concurrent use. Lifecycle
// operations are serialised within a node and compare-and-swapped in the
// store across nodes; lookups, JWKS and Signer read an immutable snapshot.
type Custody struct {
	st     Store
	sealer Sealer
	sink   event.Sink
	cfg    Config

	mu   sync.Mutex // serialises lifecycle operations and snapshot rebuilds
	snap atomic.Pointer[snapshot]
}

var _ verify.KeySet = (*Custody)(nil)

// snapshot is an immutable view of the keys, rebuilt after every change.
type snapshot struct {
	byID   map[string]*entry
	order  []*entry   // oldest first
	active *entry     // the key that signs: the most recently activated
	signer *keySigner // active's private key; nil when active is nil
}

type entry struct {
	rec store.Key // Sealed is cleared: the snapshot never holds ciphertext
	pub crypto.PublicKey
}

// published reports whether a key in state rec belongs in the JWKS at now.
func published(rec store.Key, now time.Time) bool {
	switch rec.State {
	case store.KeyPending, store.KeyActive:
		return true
	case store.KeyRetired:
		return now.Before(rec.PublishUntil)
	}
	return false
}

// Open starts custody over st. It validates cfg, checks that every key that
// is not revoked opens with sealer (a key sealed under another root key fails
// with a *RootKeyMismatchError, a damaged one with ErrSealBroken), and runs
// one Tick: on a new install the first key is activated at once—no verifier
// can have cached an older JWKS—and a pending successor is generated; after
// downtime, overdue rotations happen now.
func Open(ctx context.Context, st Store, sealer Sealer, sink event.Sink, cfg Config) (*Custody, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if st == nil || sealer == nil || sink == nil {
		return nil, errors.New("keys: Open needs a store, a sealer and an event sink")
	}
	c := &Custody{st: st, sealer: sealer, sink: sink, cfg: cfg}
	recs, err := st.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("keys: load keys: %w", err)
	}
	for _, rec := range recs {
		if rec.State == store.KeyRevoked || destroyed(rec) {
			continue // never unsealed again
		}
		s, _, err := c.unseal(ctx, rec)
		if err != nil {
			return nil, err
		}
		wipe(s)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.rebuild(ctx, recs); err != nil {
		return nil, err
	}
	if err := c.tick(ctx, cfg.Now()); err != nil {
		return nil, err
	}
	return c, nil
}

// unseal opens rec's private key and checks it matches the stored public key.
func (c *Custody) unseal(ctx context.Context, rec store.Key) (crypto.Signer, crypto.PublicKey, error) {
	if !sameSealer(rec.Sealer, c.sealer) {
		return nil, nil, &RootKeyMismatchError{KeyID: rec.ID, SealedBy: rec.Sealer, Have: c.sealer.Name()}
	}
	pub, err := parsePublicJWK(rec.PublicJWK, rec.ID, rec.Algorithm)
	if err != nil {
		return nil, nil, err
	}
	der, err := openPrivateKey(ctx, c.sealer, rec.ID, rec.Algorithm, rec.Sealed)
	if err != nil {
		return nil, nil, err
	}
	defer clear(der)
	s, err := parsePKCS8(der, rec.Algorithm)
	if err != nil {
		return nil, nil, fmt.Errorf("keys: key %s: %w", rec.ID, err)
	}
	if eq, ok := s.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(pub) {
		wipe(s)
		return nil, nil, fmt.Errorf("keys: key %s: sealed private key does not match its public key: %w", rec.ID, ErrSealBroken)
	}
	return s, pub, nil
}

// wipe zeroes what it can of a private key no longer needed.
func wipe(s crypto.Signer) {
	if k, ok := s.(ed25519.PrivateKey); ok {
		clear(k)
	}
}

// refresh reloads keys from the store and rebuilds the snapshot. c.mu held.
func (c *Custody) refresh(ctx context.Context) error {
	recs, err := c.st.Keys(ctx)
	if err != nil {
		return fmt.Errorf("keys: load keys: %w", err)
	}
	return c.rebuild(ctx, recs)
}

// rebuild replaces the snapshot with one built from recs. c.mu held.
func (c *Custody) rebuild(ctx context.Context, recs []store.Key) error {
	prev := c.snap.Load()
	s := &snapshot{byID: make(map[string]*entry, len(recs))}
	for _, rec := range recs {
		rec.Sealed = nil
		e := &entry{rec: rec}
		if rec.State != store.KeyRevoked {
			pub, err := parsePublicJWK(rec.PublicJWK, rec.ID, rec.Algorithm)
			if err != nil {
				return err
			}
			e.pub = pub
		}
		s.byID[rec.ID] = e
		s.order = append(s.order, e)
		if rec.State == store.KeyActive && (s.active == nil || !rec.ActivatedAt.Before(s.active.rec.ActivatedAt)) {
			s.active = e
		}
	}
	if s.active != nil {
		if prev != nil && prev.signer != nil && prev.signer.kid == s.active.rec.ID {
			s.signer = prev.signer
		} else {
			i := slices.IndexFunc(recs, func(r store.Key) bool { return r.ID == s.active.rec.ID })
			priv, _, err := c.unseal(ctx, recs[i])
			if err != nil {
				return err
			}
			s.signer = &keySigner{kid: s.active.rec.ID, key: priv, usable: c.usable}
		}
	}
	// A replaced signer stays reachable from SigningKeys handed out before;
	// usable refuses them once their key is revoked or long retired.
	c.snap.Store(s)
	return nil
}

// usable reports whether a SigningKey for kid may still sign: not once its
// key is revoked, and not longer than Leeway after it was retired.
func (c *Custody) usable(kid string) error {
	e, ok := c.snap.Load().byID[kid]
	if !ok {
		return fmt.Errorf("keys: key %s is unknown: %w", kid, ErrNoActiveKey)
	}
	switch e.rec.State {
	case store.KeyRevoked:
		return fmt.Errorf("keys: key %s was revoked: %w", kid, ErrKeyRevoked)
	case store.KeyRetired:
		if c.cfg.Now().After(e.rec.RetiredAt.Add(c.cfg.Leeway)) {
			return fmt.Errorf("keys: key %s was retired at %s; ask custody for the current signer: %w", kid, e.rec.RetiredAt.UTC().Format(time.RFC3339), ErrNoActiveKey)
		}
	case store.KeyPending:
		return fmt.Errorf("keys: key %s is pending: %w", kid, ErrNoActiveKey)
	}
	return nil
}

// Reload rebuilds the in-memory snapshot from the store, picking up changes
// other nodes made. Run reloads every TickInterval.
func (c *Custody) Reload(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refresh(ctx)
}

// Signer returns the active key. If the active key has reached MaxAge
// (Run stalled or was never started), it rotates first, and refuses to sign
// with an over-age key if that rotation fails. Fails with ErrNoActiveKey
// when there is no active key.
func (c *Custody) Signer(ctx context.Context) (*SigningKey, error) {
	s := c.snap.Load()
	now := c.cfg.Now()
	if s.active != nil && now.Sub(s.active.rec.ActivatedAt) >= c.cfg.MaxAge {
		if err := c.Tick(ctx, now); err != nil {
			return nil, fmt.Errorf("keys: active key %s is past its maximum age and rotation failed: %w", s.active.rec.ID, err)
		}
		s = c.snap.Load()
		if s.active != nil && now.Sub(s.active.rec.ActivatedAt) >= c.cfg.MaxAge {
			return nil, fmt.Errorf("keys: active key %s is past its maximum age: %w", s.active.rec.ID, ErrNoActiveKey)
		}
	}
	if s.active == nil {
		return nil, ErrNoActiveKey
	}
	return &SigningKey{ID: s.active.rec.ID, Algorithm: s.active.rec.Algorithm, Signer: s.signer}, nil
}

// JWKS returns the published keys—pending, active, and retired until their
// PublishUntil—with kid, alg and use "sig", oldest first.
func (c *Custody) JWKS(ctx context.Context) (jose.JSONWebKeySet, error) {
	s := c.snap.Load()
	now := c.cfg.Now()
	var set jose.JSONWebKeySet
	for _, e := range s.order {
		if published(e.rec, now) {
			set.Keys = append(set.Keys, publicJWK(e.pub, e.rec.ID, e.rec.Algorithm))
		}
	}
	return set, nil
}

// JWKSMaxAge is the Cache-Control max-age to serve the JWKS with.
func (c *Custody) JWKSMaxAge() time.Duration { return c.cfg.JWKSMaxAge }

// maxKidInError bounds how much of an untrusted kid goes into an error.
const maxKidInError = 64

// LookupKey implements verify.KeySet from the snapshot, without store I/O.
// A published key (pending, active, or retired before its PublishUntil) is
// returned. A revoked key fails with verify.ErrRevokedKey, and so does a
// retired key past PublishUntil: every token it signed has expired, so a
// token naming it is refused at once as signed by a key no longer trusted,
// without the JWKS refetch an unknown kid would cause. An unknown kid fails
// with verify.ErrUnknownKey.
func (c *Custody) LookupKey(ctx context.Context, kid string) (verify.Key, error) {
	e, ok := c.snap.Load().byID[kid]
	if !ok {
		if len(kid) > maxKidInError {
			kid = kid[:maxKidInError] + "…"
		}
		return verify.Key{}, fmt.Errorf("keys: kid %q: %w", kid, verify.ErrUnknownKey)
	}
	switch {
	case e.rec.State == store.KeyRevoked:
		return verify.Key{}, fmt.Errorf("keys: key %s was revoked: %w", kid, verify.ErrRevokedKey)
	case !published(e.rec, c.cfg.Now()):
		return verify.Key{}, fmt.Errorf("keys: key %s was retired and its tokens have expired: %w", kid, verify.ErrRevokedKey)
	}
	return verify.Key{ID: e.rec.ID, Algorithm: e.rec.Algorithm, Public: e.pub}, nil
}

// KeyInfo is everything about a key except its sealed private half.
type KeyInfo struct {
	ID           string
	Algorithm    string
	State        store.KeyState
	Published    bool // in the JWKS now
	Imported     bool // imported: exposure unknown
	Custodian    string
	CreatedAt    time.Time
	ActivateAt   time.Time
	ActivatedAt  time.Time
	RetiredAt    time.Time
	RevokedAt    time.Time
	PublishUntil time.Time
	Note         string
}

func infoOf(k store.Key, now time.Time) KeyInfo {
	return KeyInfo{
		ID: k.ID, Algorithm: k.Algorithm, State: k.State, Published: published(k, now),
		Imported: k.Imported, Custodian: k.Custodian, CreatedAt: k.CreatedAt,
		ActivateAt: k.ActivateAt, ActivatedAt: k.ActivatedAt, RetiredAt: k.RetiredAt,
		RevokedAt: k.RevokedAt, PublishUntil: k.PublishUntil, Note: k.Note,
	}
}

// List returns every key, oldest first, read from the store.
func (c *Custody) List(ctx context.Context) ([]KeyInfo, error) {
	recs, err := c.st.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("keys: list: %w", err)
	}
	now := c.cfg.Now()
	out := make([]KeyInfo, len(recs))
	for i, r := range recs {
		out[i] = infoOf(r, now)
	}
	return out, nil
}

// splitActive returns the most recently activated active key, and the others.
func splitActive(recs []store.Key) (newest *store.Key, others []store.Key) {
	var act []store.Key
	for _, r := range recs {
		if r.State == store.KeyActive {
			act = append(act, r)
		}
	}
	if len(act) == 0 {
		return nil, nil
	}
	slices.SortStableFunc(act, func(a, b store.Key) int { return a.ActivatedAt.Compare(b.ActivatedAt) })
	n := act[len(act)-1]
	return &n, act[:len(act)-1]
}

// oldestPending returns the pending key published longest, or nil.
func oldestPending(recs []store.Key) *store.Key {
	var p *store.Key
	for i := range recs {
		if recs[i].State == store.KeyPending && (p == nil || cmp.Less(recs[i].CreatedAt.UnixNano(), p.CreatedAt.UnixNano())) {
			p = &recs[i]
		}
	}
	return p
}

// String describes custody without its keys.
func (c *Custody) String() string { return "keys.Custody(sealer=" + c.sealer.Name() + ")" }

// GoString and Format show what String shows.
func (c *Custody) GoString() string           { return c.String() }
func (c *Custody) Format(f fmt.State, _ rune) { fmt.Fprint(f, c.String()) }
