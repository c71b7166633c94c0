package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// Defaults for JWKSConfig.
const (
	// DefaultJWKSMinAge is the shortest time a fetched key set is trusted
	// without a refresh, whatever Cache-Control says; it is also the age
	// used when the response has no max-age.
	DefaultJWKSMinAge = 30 * time.Second
	// DefaultJWKSMaxAge is the longest: a revoked key is refused by remote
	// verifiers at most this long after custos unpublishes it.
	DefaultJWKSMaxAge = 10 * time.Minute
	// DefaultJWKSRefreshInterval is the least time between two fetches of
	// the key set, however many unknown kids arrive (A20).
	DefaultJWKSRefreshInterval = 10 * time.Second
	// DefaultJWKSMaxSize caps the JWKS response, in bytes.
	DefaultJWKSMaxSize = 1 << 20
)

// maxGoneKeys bounds how many vanished kids a JWKS remembers as revoked.
const maxGoneKeys = 1024

var (
	errRateLimited  = errors.New("JWKS refresh rate-limited")
	errNoUsableKeys = errors.New("JWKS has no usable key")
	errDuplicateKID = errors.New("JWKS lists a kid twice")
)

// JWKSConfig configures a JWKS.
type JWKSConfig struct {
	// Issuer is the issuer URL. Its discovery document must name it exactly.
	Issuer string
	// JWKSURI, when set, is used instead of discovery's jwks_uri.
	JWKSURI string
	// HTTPClient makes the requests; nil means a client that does not
	// follow redirects.
	HTTPClient *http.Client
	// Timeout bounds each request; zero means DefaultHTTPTimeout.
	Timeout time.Duration
	// MinAge and MaxAge bound the Cache-Control max-age of the key set;
	// zero means DefaultJWKSMinAge and DefaultJWKSMaxAge.
	MinAge, MaxAge time.Duration
	// RefreshInterval is the least time between fetches; zero means
	// DefaultJWKSRefreshInterval.
	RefreshInterval time.Duration
	// MaxSize caps the response size; zero means DefaultJWKSMaxSize.
	MaxSize int64
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// JWKS is a KeySet backed by the issuer's published JSON Web Key Set. It is
// safe for concurrent use.
//
// It keeps the keys of the last successful fetch and refreshes them when
// they are older than the response's max-age (bounded by MinAge and MaxAge)
// or when a token names a kid it does not know. Refreshes are single-flight
// and at most one per RefreshInterval, so random kids cannot make it hammer
// the issuer. A failed fetch, a document that does not parse or one without
// a single usable key changes nothing: known-good keys are never dropped
// because of a bad refresh. A key that a successful fetch no longer lists
// is revoked: custos unpublishes a key when it is revoked, and a retired key
// only after its last token expired, so LookupKey returns ErrRevokedKey for
// it (until a later fetch lists it again).
//
// Only keys with use "sig" (or no use), with alg EdDSA on an Ed25519 OKP key
// or ES256 on a P-256 EC key, and with no private part are taken; other
// entries are ignored. jku and x5u are never followed.
type JWKS struct {
	cfg    JWKSConfig
	uri    string
	client *http.Client
	group  singleflight.Group

	mu          sync.RWMutex
	keys        map[string]Key
	gone        map[string]time.Time // kid → when a fetch stopped listing it
	expires     time.Time            // keys are fresh until then
	lastAttempt time.Time            // last fetch started
}

var _ KeySet = (*JWKS)(nil)

// NewRemoteKeySet discovers the issuer's jwks_uri (unless cfg.JWKSURI is
// set) and fetches the key set once; it fails if either step fails.
func NewRemoteKeySet(ctx context.Context, cfg JWKSConfig) (*JWKS, error) {
	if cfg.Issuer == "" {
		return nil, fmt.Errorf("%w: JWKSConfig.Issuer is required", ErrInvalidConfig)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultHTTPTimeout
	}
	if cfg.MinAge <= 0 {
		cfg.MinAge = DefaultJWKSMinAge
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultJWKSMaxAge
	}
	if cfg.MaxAge < cfg.MinAge {
		return nil, fmt.Errorf("%w: JWKS MaxAge below MinAge", ErrInvalidConfig)
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = DefaultJWKSRefreshInterval
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultJWKSMaxSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	j := &JWKS{cfg: cfg, client: cfg.HTTPClient, keys: map[string]Key{}, gone: map[string]time.Time{}}
	if j.client == nil {
		j.client = defaultHTTPClient()
	}
	j.uri = cfg.JWKSURI
	if j.uri == "" {
		d, err := discover(ctx, j.client, cfg.Issuer, cfg.Timeout)
		if err != nil {
			return nil, err
		}
		j.uri = d.JWKSURI
	}
	if err := checkEndpoint(cfg.Issuer, j.uri); err != nil {
		return nil, fmt.Errorf("verify: jwks_uri: %w", err)
	}
	j.lastAttempt = cfg.Now()
	if err := j.fetchAndInstall(ctx); err != nil {
		return nil, err
	}
	return j, nil
}

// LookupKey returns the key named kid. It returns an error wrapping
// ErrUnknownKey when the key set does not list kid even after a refresh (or
// a refresh is not allowed yet), ErrRevokedKey when a fetch stopped listing
// it, and a *FetchError when a needed refresh failed.
func (j *JWKS) LookupKey(ctx context.Context, kid string) (Key, error) {
	key, known, gone, fresh := j.lookup(kid)
	if fresh {
		switch {
		case known:
			return key, nil
		case gone:
			return Key{}, fmt.Errorf("%w: the JWKS no longer lists it", ErrRevokedKey)
		}
	}
	err := j.refresh(ctx)
	key, known, gone, _ = j.lookup(kid)
	switch {
	case known:
		return key, nil // fresh, or stale because the refresh failed: keep known-good keys
	case gone:
		return Key{}, fmt.Errorf("%w: the JWKS no longer lists it", ErrRevokedKey)
	case err != nil && !errors.Is(err, errRateLimited):
		return Key{}, err
	case err != nil:
		return Key{}, fmt.Errorf("%w (%v)", ErrUnknownKey, err)
	default:
		return Key{}, ErrUnknownKey
	}
}

func (j *JWKS) lookup(kid string) (key Key, known, gone, fresh bool) {
	now := j.cfg.Now()
	j.mu.RLock()
	defer j.mu.RUnlock()
	key, known = j.keys[kid]
	_, gone = j.gone[kid]
	return key, known, gone, now.Before(j.expires)
}

// refresh fetches the key set unless another goroutine is already doing so
// (then it waits for that fetch) or the last fetch started less than
// RefreshInterval ago (then it returns errRateLimited).
func (j *JWKS) refresh(ctx context.Context) error {
	ch := j.group.DoChan("jwks", func() (any, error) {
		now := j.cfg.Now()
		j.mu.Lock()
		if now.Sub(j.lastAttempt) < j.cfg.RefreshInterval {
			j.mu.Unlock()
			return nil, errRateLimited
		}
		j.lastAttempt = now
		j.mu.Unlock()
		// The fetch serves every waiting caller: one caller's cancellation
		// must not fail the others. do() bounds it with cfg.Timeout.
		return nil, j.fetchAndInstall(context.WithoutCancel(ctx))
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (j *JWKS) fetchAndInstall(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.uri, nil)
	if err != nil {
		return fmt.Errorf("verify: JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	body, hdr, err := do(j.client, req, j.cfg.Timeout, j.cfg.MaxSize)
	if err != nil {
		return err
	}
	keys, listed, err := parseJWKS(body)
	if err != nil {
		return &FetchError{URL: j.uri, StatusCode: http.StatusOK, Err: err}
	}
	age := maxAge(hdr.Values("Cache-Control"), j.cfg.MinAge)
	age = min(max(age, j.cfg.MinAge), j.cfg.MaxAge)
	j.install(keys, listed, age)
	return nil
}

// install replaces the key set with a successful fetch's. Kids the fetch
// lists but could not use keep their old key; kids it does not list at all
// are remembered as gone.
func (j *JWKS) install(keys map[string]Key, listed map[string]bool, age time.Duration) {
	now := j.cfg.Now()
	j.mu.Lock()
	defer j.mu.Unlock()
	next := maps.Clone(keys)
	for kid, old := range j.keys {
		if _, ok := next[kid]; ok {
			continue
		}
		if listed[kid] {
			next[kid] = old
			continue
		}
		j.gone[kid] = now
	}
	for kid := range next {
		delete(j.gone, kid)
	}
	for len(j.gone) > maxGoneKeys {
		var oldest string
		var at time.Time
		for kid, t := range j.gone {
			if oldest == "" || t.Before(at) {
				oldest, at = kid, t
			}
		}
		delete(j.gone, oldest)
	}
	j.keys = next
	j.expires = now.Add(age)
}

// parseJWKS parses a JWK Set document. keys holds the usable keys; listed
// holds every kid the document names, usable or not. A document that is not
// a strict JSON object with a keys array, that lists a kid twice, or that
// has no usable key is an error.
func parseJWKS(body []byte) (keys map[string]Key, listed map[string]bool, err error) {
	doc, err := strictObject(body)
	if err != nil {
		return nil, nil, fmt.Errorf("JWKS: %w", err)
	}
	var entries []json.RawMessage
	if raw, ok := doc["keys"]; !ok || len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &entries) != nil {
		return nil, nil, errors.New("JWKS has no keys array")
	}
	keys, listed = map[string]Key{}, map[string]bool{}
	for _, raw := range entries {
		members, err := strictObject(raw)
		if err != nil {
			continue
		}
		kid, _ := jsonString(members["kid"])
		if kid == "" {
			continue
		}
		if listed[kid] {
			return nil, nil, errDuplicateKID
		}
		listed[kid] = true
		if k, ok := usableKey(kid, members, raw); ok {
			keys[kid] = k
		}
	}
	if len(keys) == 0 {
		return nil, nil, errNoUsableKeys
	}
	return keys, listed, nil
}

// usableKey returns the verification key in a JWK, if it is one custos
// accepts.
func usableKey(kid string, members map[string]json.RawMessage, raw json.RawMessage) (Key, bool) {
	if !validKeyID(kid) {
		return Key{}, false
	}
	if raw, ok := members["use"]; ok {
		if use, _ := jsonString(raw); use != "sig" {
			return Key{}, false
		}
	}
	alg, _ := jsonString(members["alg"])
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil || !jwk.Valid() || !jwk.IsPublic() {
		return Key{}, false
	}
	switch pub := jwk.Key.(type) {
	case ed25519.PublicKey:
		if alg == AlgEdDSA && len(pub) == ed25519.PublicKeySize {
			return Key{ID: kid, Algorithm: alg, Public: pub}, true
		}
	case *ecdsa.PublicKey:
		if alg == AlgES256 && pub.Curve == elliptic.P256() {
			return Key{ID: kid, Algorithm: alg, Public: pub}, true
		}
	}
	return Key{}, false
}

// maxAge returns the max-age directive of Cache-Control header values, or
// def when there is none.
func maxAge(values []string, def time.Duration) time.Duration {
	for _, v := range values {
		for _, d := range strings.Split(v, ",") {
			name, val, ok := strings.Cut(strings.TrimSpace(d), "=")
			if !ok || !strings.EqualFold(name, "max-age") {
				continue
			}
			n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64)
			if err != nil || n < 0 {
				continue
			}
			return time.Duration(min(n, 1<<30)) * time.Second
		}
	}
	return def
}
