// Package issuer is custos's OAuth 2.1 and OpenID Connect provider: the
// hosted login page, the authorization-code flow with PKCE, refresh-token
// rotation, client credentials, ID tokens, userinfo, introspection (RFC 7662)
// and revocation (RFC 7009).
//
// Every token it returns has a receipt, written durably before the response:
// a token custos did not record is a token custos did not issue. Access
// tokens are RFC 9068 JWTs (docs/spec/access-token.md) signed by a key the
// issuer never sees: custody hands it a signer, not key bytes.
package issuer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/custos-dev/custos/internal/accounts"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/keys"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/verify"
)

// Defaults and hard limits.
const (
	DefaultAccessTokenTTL  = 10 * time.Minute
	MaxAccessTokenTTL      = 15 * time.Minute
	DefaultIDTokenTTL      = 10 * time.Minute
	DefaultRefreshTokenTTL = 30 * 24 * time.Hour
	DefaultCodeTTL         = 60 * time.Second
	// DefaultAudience is the audience of access tokens for clients
	// registered without one.
	DefaultAudience = "custos"
	// MaxBodyBytes caps request bodies on every endpoint.
	MaxBodyBytes = 64 << 10
	// MaxHeaderBytes caps request headers; the HTTP server enforces it.
	MaxHeaderBytes = 16 << 10
)

// Config is the issuer's configuration. Zero durations take the defaults.
type Config struct {
	// Issuer is the issuer identifier: the https (or loopback http) URL at
	// which the endpoints are served, without a trailing slash.
	Issuer          string
	AccessTokenTTL  time.Duration
	IDTokenTTL      time.Duration
	RefreshTokenTTL time.Duration
	CodeTTL         time.Duration
	// CSRFKey keys the login form's CSRF tokens. Nodes sharing a database
	// must share it; if empty, a random key is made per process.
	CSRFKey []byte
	Logger  *slog.Logger
	Now     func() time.Time
}

func (c Config) withDefaults() (Config, error) {
	u, err := url.Parse(c.Issuer)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(c.Issuer, "/") {
		return c, fmt.Errorf("issuer: issuer %q must be an absolute URL without query, fragment or trailing slash", c.Issuer)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
		return c, fmt.Errorf("issuer: issuer %q must use https (http is allowed only on loopback)", c.Issuer)
	}
	if c.AccessTokenTTL == 0 {
		c.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if c.AccessTokenTTL < time.Minute || c.AccessTokenTTL > MaxAccessTokenTTL {
		return c, fmt.Errorf("issuer: access token lifetime %v must be between 1m and %v", c.AccessTokenTTL, MaxAccessTokenTTL)
	}
	if c.IDTokenTTL == 0 {
		c.IDTokenTTL = DefaultIDTokenTTL
	}
	if c.RefreshTokenTTL == 0 {
		c.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if c.CodeTTL == 0 {
		c.CodeTTL = DefaultCodeTTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Store is the storage the issuer needs.
type Store interface {
	Client(ctx context.Context, id string) (store.Client, error)
	InsertAuthCode(ctx context.Context, c store.AuthCode) error
	AuthCode(ctx context.Context, hash []byte) (store.AuthCode, error)
	RedeemAuthCode(ctx context.Context, hash []byte, at time.Time, familyID string, g store.Grant) error
	RefreshToken(ctx context.Context, hash []byte) (store.RefreshToken, error)
	RotateRefresh(ctx context.Context, old []byte, at time.Time, g store.Grant) error
	InsertGrant(ctx context.Context, g store.Grant) error
	Receipt(ctx context.Context, jti string) (store.Receipt, error)
	RevokeReceipt(ctx context.Context, jti string, at time.Time) error
	RevokeFamily(ctx context.Context, familyID string, at time.Time) (int, error)
	RevokeSession(ctx context.Context, sessionID string, at time.Time) (int, error)
	Prune(ctx context.Context, before time.Time) (int, error)
}

// Custody is what the issuer needs from key custody.
type Custody interface {
	verify.KeySet
	Signer(ctx context.Context) (*keys.SigningKey, error)
	JWKS(ctx context.Context) (jose.JSONWebKeySet, error)
	JWKSMaxAge() time.Duration
}

// Accounts is what the issuer needs from the accounts service.
type Accounts interface {
	Authenticate(ctx context.Context, loginID, password string, src accounts.Source) (store.Account, error)
	Account(ctx context.Context, id string) (store.Account, error)
	IssueDeviceToken(accountID string) string
}

// Issuer serves the OAuth and OpenID Connect endpoints.
type Issuer struct {
	cfg      Config
	store    Store
	custody  Custody
	accounts Accounts
	events   event.Sink
	verifier *verify.Verifier // access tokens of any audience, receipts checked against the store
	csrfKey  [32]byte
	log      *slog.Logger
}

// New returns an issuer. It does not start anything.
func New(cfg Config, st Store, custody Custody, acc Accounts, sink event.Sink) (*Issuer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	is := &Issuer{cfg: cfg, store: st, custody: custody, accounts: acc, events: sink, log: cfg.Logger}
	if len(cfg.CSRFKey) >= 32 {
		copy(is.csrfKey[:], cfg.CSRFKey)
	} else {
		rand.Read(is.csrfKey[:])
	}
	is.verifier, err = verify.New(verify.Config{
		Issuer:      cfg.Issuer,
		AnyAudience: true,
		Keys:        custody,
		Receipts:    LocalReceipts(st),
		MaxLifetime: MaxAccessTokenTTL,
		Now:         cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	return is, nil
}

// Endpoint paths, relative to the issuer URL.
const (
	PathDiscovery  = "/.well-known/openid-configuration"
	PathJWKS       = "/oauth2/jwks"
	PathAuthorize  = "/oauth2/authorize"
	PathToken      = "/oauth2/token"
	PathUserinfo   = "/oauth2/userinfo"
	PathIntrospect = "/oauth2/introspect"
	PathRevoke     = "/oauth2/revoke"
	PathLogout     = "/oauth2/logout"
)

// Handler returns the issuer's HTTP handler.
func (is *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathDiscovery, is.discovery)
	mux.HandleFunc("GET "+PathJWKS, is.jwks)
	mux.HandleFunc("GET "+PathAuthorize, is.authorize)
	mux.HandleFunc("POST "+PathAuthorize, is.login)
	mux.HandleFunc("POST "+PathToken, is.token)
	mux.HandleFunc("GET "+PathUserinfo, is.userinfo)
	mux.HandleFunc("POST "+PathUserinfo, is.userinfo)
	mux.HandleFunc("POST "+PathIntrospect, is.introspect)
	mux.HandleFunc("POST "+PathRevoke, is.revoke)
	mux.HandleFunc("GET "+PathLogout, is.logout)
	mux.HandleFunc("POST "+PathLogout, is.logout)
	return limitBody(mux)
}

// RunPruner deletes receipts, refresh tokens and codes a while after they
// expire, every interval, until ctx ends.
func (is *Issuer) RunPruner(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Keep receipts an hour past expiry so late introspection of an
			// expired token still tells "expired" from "forged".
			n, err := is.store.Prune(ctx, is.cfg.Now().Add(-time.Hour))
			if err != nil && !errors.Is(err, context.Canceled) {
				is.log.Error("pruning expired receipts", "err", err)
			} else if n > 0 {
				is.log.Info("pruned expired receipts", "count", n)
			}
		}
	}
}

// emit records an event; failure to record is logged, and reported to the
// caller so it can fail closed where the event is a precondition.
func (is *Issuer) emit(ctx context.Context, e event.Event) error {
	if e.Time.IsZero() {
		e.Time = is.cfg.Now()
	}
	if err := is.events.Emit(ctx, e); err != nil {
		is.log.Error("recording event", "type", e.Type, "err", err)
		return err
	}
	return nil
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1" || strings.HasPrefix(host, "127.")
}
