// Package clients registers the OAuth clients that may use custos:
// confidential clients (servers that keep a secret) and public clients
// (browser and mobile apps, which always use PKCE). Redirect URIs are
// matched exactly, so registration is where they are checked.
package clients

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
)

// Store is the storage the registry needs.
type Store interface {
	CreateClient(ctx context.Context, c store.Client) error
	Client(ctx context.Context, id string) (store.Client, error)
	ListClients(ctx context.Context) ([]store.Client, error)
	DeleteClient(ctx context.Context, id string, at time.Time) error
}

// Registry registers and removes clients.
type Registry struct {
	st     Store
	events event.Sink
	now    func() time.Time
}

// New returns a registry.
func New(st Store, sink event.Sink) *Registry {
	return &Registry{st: st, events: sink, now: time.Now}
}

// Spec describes a client to register.
type Spec struct {
	ID           string
	Name         string
	Public       bool
	RedirectURIs []string
	Scopes       []string // default: openid profile email phone for clients with redirect URIs
	Audiences    []string
	GrantTypes   []string // default: authorization_code + refresh_token, or client_credentials without redirect URIs
}

// InputError is a registration refused for a bad field.
type InputError struct {
	Field, Msg string
}

func (e *InputError) Error() string { return fmt.Sprintf("clients: %s: %s", e.Field, e.Msg) }

// ErrExists means the client ID is taken, now or by a client that was
// removed: ids are never reused, because receipts, refresh tokens and audit
// events name clients by id.
var ErrExists = errors.New("clients: a client with this ID exists or existed")

var (
	idPattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$`)
	scopePattern = regexp.MustCompile(`^[\x21\x23-\x5b\x5d-\x7e]{1,128}$`) // RFC 6749 §3.3 scope-token
)

var knownGrants = []string{"authorization_code", "refresh_token", "client_credentials"}

// Add registers a client. For a confidential client it returns the secret,
// which is shown once and stored only as a hash.
func (r *Registry) Add(ctx context.Context, s Spec, actor string) (store.Client, string, error) {
	c, err := s.client(r.now())
	if err != nil {
		return store.Client{}, "", err
	}
	var secret string
	if c.Kind == store.ClientConfidential {
		b := make([]byte, 32)
		rand.Read(b)
		secret = base64.RawURLEncoding.EncodeToString(b)
		sum := sha256.Sum256([]byte(secret))
		c.SecretHash = sum[:]
	}
	if err := r.st.CreateClient(ctx, c); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return store.Client{}, "", fmt.Errorf("%w: %s", ErrExists, c.ID)
		}
		return store.Client{}, "", err
	}
	err = r.events.Emit(ctx, event.Event{Time: r.now(), Class: event.ClassAdmin, Type: "client_registered", Actor: actor,
		Client: c.ID, Fields: map[string]any{"kind": string(c.Kind), "redirect_uris": strings.Join(c.RedirectURIs, " "),
			"scopes": strings.Join(c.Scopes, " "), "grant_types": strings.Join(c.GrantTypes, " ")}})
	return c, secret, err
}

func (s Spec) client(now time.Time) (store.Client, error) {
	if !idPattern.MatchString(s.ID) {
		return store.Client{}, &InputError{"id", "2–64 letters, digits, '.', '_' or '-', starting with a letter or digit"}
	}
	name := strings.TrimSpace(s.Name)
	if name == "" {
		name = s.ID
	}
	if len(name) > 100 || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return store.Client{}, &InputError{"name", "at most 100 bytes, no control characters"}
	}
	c := store.Client{ID: s.ID, Name: name, Kind: store.ClientConfidential, CreatedAt: now,
		RedirectURIs: slices.Clone(s.RedirectURIs), Audiences: slices.Clone(s.Audiences)}
	if s.Public {
		c.Kind = store.ClientPublic
	}
	for _, u := range c.RedirectURIs {
		if err := checkRedirect(u, s.Public); err != nil {
			return store.Client{}, err
		}
	}
	c.GrantTypes = slices.Clone(s.GrantTypes)
	if len(c.GrantTypes) == 0 {
		if len(c.RedirectURIs) > 0 {
			c.GrantTypes = []string{"authorization_code", "refresh_token"}
		} else {
			c.GrantTypes = []string{"client_credentials"}
		}
	}
	for _, g := range c.GrantTypes {
		if !slices.Contains(knownGrants, g) {
			return store.Client{}, &InputError{"grant", fmt.Sprintf("%q is not supported (use %s)", g, strings.Join(knownGrants, ", "))}
		}
	}
	hasCode := slices.Contains(c.GrantTypes, "authorization_code")
	switch {
	case hasCode && len(c.RedirectURIs) == 0:
		return store.Client{}, &InputError{"redirect-uri", "the authorization code flow needs at least one redirect URI"}
	case !hasCode && len(c.RedirectURIs) > 0:
		return store.Client{}, &InputError{"redirect-uri", "redirect URIs are only used by the authorization code flow"}
	case s.Public && slices.Contains(c.GrantTypes, "client_credentials"):
		return store.Client{}, &InputError{"grant", "public clients cannot use client credentials"}
	case slices.Contains(c.GrantTypes, "refresh_token") && !hasCode:
		return store.Client{}, &InputError{"grant", "refresh tokens come from the authorization code flow"}
	}
	c.Scopes = slices.Clone(s.Scopes)
	if len(c.Scopes) == 0 && hasCode {
		c.Scopes = []string{"openid", "profile", "email", "phone"}
	}
	for _, sc := range c.Scopes {
		if !scopePattern.MatchString(sc) {
			return store.Client{}, &InputError{"scope", fmt.Sprintf("%q is not a valid scope token", sc)}
		}
	}
	for _, a := range c.Audiences {
		if a == "" || len(a) > 256 || strings.ContainsFunc(a, func(r rune) bool { return r <= 0x20 || r == 0x7f }) {
			return store.Client{}, &InputError{"audience", fmt.Sprintf("%q is not a valid audience", a)}
		}
	}
	return c, nil
}

// checkRedirect enforces OAuth 2.1 §2.3.1 and RFC 8252: absolute URIs
// without fragments; https, or http only on loopback (native apps), or a
// private-use scheme for public native clients.
func checkRedirect(raw string, public bool) error {
	bad := func(msg string) error { return &InputError{"redirect-uri", fmt.Sprintf("%q: %s", raw, msg)} }
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return bad("must be an absolute URI")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return bad("must not contain a fragment")
	}
	if u.User != nil {
		return bad("must not contain user information")
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return bad("needs a host")
		}
	case "http":
		h := u.Hostname()
		if h != "127.0.0.1" && h != "::1" && h != "localhost" {
			return bad("http is allowed only on loopback (127.0.0.1, [::1], localhost)")
		}
	default:
		if !public || !strings.Contains(u.Scheme, ".") {
			return bad("must use https (or a reverse-domain private scheme for public native apps)")
		}
	}
	return nil
}

// Get returns a client.
func (r *Registry) Get(ctx context.Context, id string) (store.Client, error) {
	return r.st.Client(ctx, id)
}

// List returns every client.
func (r *Registry) List(ctx context.Context) ([]store.Client, error) { return r.st.ListClients(ctx) }

// Remove deletes a client and revokes every token it holds.
func (r *Registry) Remove(ctx context.Context, id, actor string) error {
	if err := r.st.DeleteClient(ctx, id, r.now()); err != nil {
		return err
	}
	return r.events.Emit(ctx, event.Event{Time: r.now(), Class: event.ClassAdmin, Type: "client_removed", Actor: actor, Client: id})
}
