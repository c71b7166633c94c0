package verify

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"time"
)

var errTokenSize = errors.New("token larger than the size cap")

// Verifier verifies custos access tokens. It is safe for concurrent use.
type Verifier struct {
	cfg   Config
	cache *lru[string, cachedToken] // nil when disabled
}

// cachedToken is what the Verifier remembers about a token it accepted: the
// claims (never handed out, only copies) and the key that verified it.
type cachedToken struct {
	claims *Claims
	key    Key
}

// New returns a Verifier for cfg, or an error wrapping ErrInvalidConfig.
func New(cfg Config) (*Verifier, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	v := &Verifier{cfg: cfg}
	if cfg.CacheSize > 0 {
		v.cache = newLRU[string, cachedToken](cfg.CacheSize)
	}
	return v, nil
}

// Verify checks token and returns its claims. On refusal it returns a nil
// *Claims and an *Error whose Reason says why (see ReasonOf); the error
// never contains the token. The returned Claims are the caller's own copy.
//
// The checks, in order, are listed in docs/spec/access-token.md: size,
// compact serialization, header, key, signature, claims, receipt. A token
// verified before is found in a cache; then only the key (still published
// and unchanged) and the receipt (still present and unrevoked) are checked
// again.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if len(token) > v.cfg.MaxTokenSize {
		return nil, refuse(ReasonMalformed, errTokenSize)
	}
	now := v.cfg.Now()
	if v.cache != nil {
		if hit, ok := v.cache.get(token, now); ok {
			c, done, err := v.recheck(ctx, token, hit)
			if done {
				return c, err
			}
		}
	}
	c, key, err := v.verifyToken(ctx, token, now)
	if err != nil {
		return nil, err
	}
	out := c.clone()
	if err := v.checkReceipt(ctx, token, out); err != nil {
		return nil, withClaims(err, out)
	}
	if v.cache != nil {
		v.cache.put(token, cachedToken{claims: c, key: key}, c.ExpiresAt.Add(v.cfg.Leeway))
	}
	return out, nil
}

// recheck re-validates a cached token: its key must still be the one that
// verified it, and its receipt must still hold. done is false when the key
// changed under the same kid, in which case the token is verified afresh.
func (v *Verifier) recheck(ctx context.Context, token string, hit cachedToken) (c *Claims, done bool, err error) {
	key, err := v.cfg.Keys.LookupKey(ctx, hit.key.ID)
	if err != nil {
		if !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrRevokedKey) {
			return nil, true, keyError(err) // transient: keep the entry
		}
		v.cache.remove(token)
		return nil, true, keyError(err)
	}
	if !sameKey(key, hit.key) {
		v.cache.remove(token)
		return nil, false, nil
	}
	out := hit.claims.clone()
	if err := v.checkReceipt(ctx, token, out); err != nil {
		if r := ReasonOf(err); r == ReasonForged || r == ReasonRevoked {
			v.cache.remove(token)
		}
		return nil, true, withClaims(err, out)
	}
	return out, true, nil
}

// sameKey reports whether a and b are the same verification key.
func sameKey(a, b Key) bool {
	if a.ID != b.ID || a.Algorithm != b.Algorithm {
		return false
	}
	pa, ok := a.Public.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return false
	}
	return pa.Equal(b.Public)
}

// verifyToken runs every check but the receipt.
func (v *Verifier) verifyToken(ctx context.Context, token string, now time.Time) (*Claims, Key, error) {
	parts, err := splitCompact(token)
	if err != nil {
		return nil, Key{}, refuse(ReasonMalformed, err)
	}
	h, err := parseHeader(parts.header, v.cfg.Algorithms)
	if err != nil {
		return nil, Key{}, err
	}
	key, err := v.cfg.Keys.LookupKey(ctx, h.kid)
	if err != nil {
		return nil, Key{}, keyError(err)
	}
	if key.ID != h.kid {
		return nil, Key{}, refuse(ReasonUnavailable, errors.New("key set returned a key with another kid"))
	}
	if key.Algorithm != h.alg {
		return nil, Key{}, refuse(ReasonAlgorithm, fmt.Errorf("alg %s but the key is for %.16q", h.alg, key.Algorithm))
	}
	if err := verifySignature(h.alg, key.Public, []byte(parts.signingInput), parts.signature); err != nil {
		if errors.Is(err, errKeyType) {
			return nil, Key{}, refuse(ReasonAlgorithm, err)
		}
		return nil, Key{}, refuse(ReasonSignature, err)
	}
	c, err := parseClaims(parts.payload, v.cfg, now)
	if err != nil {
		return nil, Key{}, err
	}
	c.KeyID, c.Algorithm = h.kid, h.alg
	return c, key, nil
}

// checkReceipt asks the ReceiptChecker, giving it the token when it wants it.
func (v *Verifier) checkReceipt(ctx context.Context, token string, c *Claims) error {
	var err error
	switch rc := v.cfg.Receipts.(type) {
	case nil:
		return nil
	case TokenReceiptChecker:
		err = rc.CheckTokenReceipt(ctx, token, c)
	default:
		err = rc.CheckReceipt(ctx, c)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNoReceipt):
		return refuse(ReasonForged, err)
	case errors.Is(err, ErrTokenRevoked):
		return refuse(ReasonRevoked, err)
	default:
		return refuse(ReasonUnavailable, err)
	}
}

// keyError maps a KeySet error to a refusal.
func keyError(err error) error {
	switch {
	case errors.Is(err, ErrRevokedKey):
		return refuse(ReasonRevokedKey, err)
	case errors.Is(err, ErrUnknownKey):
		return refuse(ReasonUnknownKey, err)
	default:
		return refuse(ReasonUnavailable, err)
	}
}

func refuse(r Reason, err error) *Error { return &Error{Reason: r, Err: err} }

// withClaims attaches c to a forged_token or revoked_token refusal.
func withClaims(err error, c *Claims) error {
	if e, ok := err.(*Error); ok && (e.Reason == ReasonForged || e.Reason == ReasonRevoked) {
		e.Claims = c
	}
	return err
}
