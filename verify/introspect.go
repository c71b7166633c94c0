package verify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults for IntrospectorConfig.
const (
	// DefaultIntrospectionCacheAge is the longest an active introspection
	// answer is reused: a token revoked at the issuer is refused by remote
	// verifiers at most this long afterwards.
	DefaultIntrospectionCacheAge = 30 * time.Second
	// DefaultIntrospectionCacheSize bounds the positive cache.
	DefaultIntrospectionCacheSize = 4096
	// DefaultIntrospectionMaxSize caps the introspection response, in bytes.
	DefaultIntrospectionMaxSize = 64 << 10
)

var errNeedsToken = errors.New("verify: introspection needs the token; use the Introspector through a Verifier")

// IntrospectorConfig configures an Introspector.
type IntrospectorConfig struct {
	// Issuer is the issuer URL; its discovery document gives the endpoint
	// when Endpoint is empty.
	Issuer string
	// Endpoint is the RFC 7662 introspection endpoint.
	Endpoint string
	// ClientID and ClientSecret authenticate this resource server to the
	// endpoint with HTTP Basic (RFC 6749 §2.3.1).
	ClientID     string
	ClientSecret Secret
	// HTTPClient makes the requests; nil means a client that does not
	// follow redirects.
	HTTPClient *http.Client
	// Timeout bounds each request; zero means DefaultHTTPTimeout.
	Timeout time.Duration
	// MaxCacheAge bounds how long an active answer is reused; zero means
	// DefaultIntrospectionCacheAge, negative disables the cache.
	MaxCacheAge time.Duration
	// CacheSize bounds the cache; zero means DefaultIntrospectionCacheSize.
	CacheSize int
	// MaxSize caps the response size; zero means DefaultIntrospectionMaxSize.
	MaxSize int64
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Introspector is a remote ReceiptChecker: it asks the issuer whether it
// issued a token and still holds it valid, with OAuth 2.0 Token
// Introspection (RFC 7662). custos answers active only for tokens with an
// unrevoked receipt, so "active": false is reported as ErrNoReceipt (custos
// does not say whether the token was forged or revoked). An active answer
// must name the token's jti, sub and client_id, and, when present, its iss
// and exp; otherwise the answer is for another token and ErrNoReceipt is
// returned. Active answers are cached per jti for min(token's remaining
// life, MaxCacheAge); inactive ones are not cached. It is safe for
// concurrent use.
type Introspector struct {
	cfg      IntrospectorConfig
	endpoint string
	client   *http.Client
	cache    *lru[string, introspected] // nil when disabled
}

type introspected struct{ subject, clientID string }

var _ TokenReceiptChecker = (*Introspector)(nil)

// NewIntrospector returns an Introspector for cfg, discovering the endpoint
// from the issuer when cfg.Endpoint is empty.
func NewIntrospector(ctx context.Context, cfg IntrospectorConfig) (*Introspector, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, fmt.Errorf("%w: IntrospectorConfig needs Issuer, ClientID and ClientSecret", ErrInvalidConfig)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultHTTPTimeout
	}
	if cfg.MaxCacheAge == 0 {
		cfg.MaxCacheAge = DefaultIntrospectionCacheAge
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultIntrospectionCacheSize
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultIntrospectionMaxSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	in := &Introspector{cfg: cfg, endpoint: cfg.Endpoint, client: cfg.HTTPClient}
	if in.client == nil {
		in.client = defaultHTTPClient()
	}
	if in.endpoint == "" {
		d, err := discover(ctx, in.client, cfg.Issuer, cfg.Timeout)
		if err != nil {
			return nil, err
		}
		in.endpoint = d.IntrospectionEndpoint
	}
	if err := checkEndpoint(cfg.Issuer, in.endpoint); err != nil {
		return nil, fmt.Errorf("verify: introspection_endpoint: %w", err)
	}
	if cfg.MaxCacheAge > 0 {
		in.cache = newLRU[string, introspected](cfg.CacheSize)
	}
	return in, nil
}

// CheckReceipt cannot introspect without the token and always fails (not
// with ErrNoReceipt: the Verifier refuses the token as unavailable). The
// Verifier calls CheckTokenReceipt instead.
func (in *Introspector) CheckReceipt(context.Context, *Claims) error { return errNeedsToken }

// CheckTokenReceipt introspects token, whose verified claims are c.
func (in *Introspector) CheckTokenReceipt(ctx context.Context, token string, c *Claims) error {
	now := in.cfg.Now()
	if in.cache != nil {
		if hit, ok := in.cache.get(c.JTI, now); ok && hit.subject == c.Subject && hit.clientID == c.ClientID {
			return nil
		}
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("verify: introspection: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(in.cfg.ClientID), url.QueryEscape(string(in.cfg.ClientSecret)))
	body, _, err := do(in.client, req, in.cfg.Timeout, in.cfg.MaxSize)
	if err != nil {
		return err
	}
	if err := matchIntrospection(body, c); err != nil {
		return err
	}
	if in.cache != nil {
		until := now.Add(in.cfg.MaxCacheAge)
		if c.ExpiresAt.Before(until) {
			until = c.ExpiresAt
		}
		in.cache.put(c.JTI, introspected{subject: c.Subject, clientID: c.ClientID}, until)
	}
	return nil
}

// matchIntrospection checks an RFC 7662 response against the token's claims.
func matchIntrospection(body []byte, c *Claims) error {
	m, err := strictObject(body)
	if err != nil {
		return fmt.Errorf("verify: introspection response: %w", err)
	}
	switch string(m["active"]) {
	case "true":
	case "false":
		return fmt.Errorf("%w: introspection says the token is not active", ErrNoReceipt)
	default:
		return errors.New("verify: introspection response has no boolean active")
	}
	mismatch := func(name string) error {
		return fmt.Errorf("%w: introspection answered for another %s", ErrNoReceipt, name)
	}
	for _, f := range [...]struct{ name, want string }{{"jti", c.JTI}, {"sub", c.Subject}, {"client_id", c.ClientID}} {
		if got, ok := jsonString(m[f.name]); !ok || got != f.want {
			return mismatch(f.name)
		}
	}
	if raw, ok := m["iss"]; ok {
		if got, ok := jsonString(raw); !ok || got != c.Issuer {
			return mismatch("iss")
		}
	}
	if raw, ok := m["exp"]; ok {
		if got, ok := jsonInt(raw); !ok || got != c.ExpiresAt.Unix() {
			return mismatch("exp")
		}
	}
	return nil
}
