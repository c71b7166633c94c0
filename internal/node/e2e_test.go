package node_test

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/custos-dev/custos/internal/accounts"
	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/clients"
	"github.com/custos-dev/custos/internal/node"
)

// testNode starts a node on a loopback port with fast (test-only) password
// hashing and returns it with its base URL.
func testNode(t *testing.T) (*node.Node, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.Config{DataDir: t.TempDir(), Addr: ln.Addr().String()}
	cfg.Accounts = accounts.Config{Params: accounts.DefaultParams()}
	n, err := node.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		n.Close()
	})
	return n, n.Config().Issuer
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// browser signs in through the hosted login page as a person would and
// returns the redirect to the client (with the code).
func browserSignIn(t *testing.T, authURL, loginID, password string) *url.URL {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	b := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := b.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login page: %d\n%s", resp.StatusCode, page)
	}
	form := url.Values{"login_id": {loginID}, "password": {password}}
	for _, m := range hiddenInput.FindAllStringSubmatch(string(page), -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	if form.Get("csrf") == "" {
		t.Fatalf("login page has no CSRF token:\n%s", page)
	}
	u, _ := url.Parse(authURL)
	resp, err = b.PostForm(u.Scheme+"://"+u.Host+u.Path, form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in POST: %d, want 303\n%s", resp.StatusCode, body)
	}
	loc, err := resp.Location()
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestOIDCFlowWithIndependentClients runs the authorization code flow with
// PKCE using go-oidc and x/oauth2 — implementations custos did not write —
// then refreshes, introspects and revokes.
func TestOIDCFlowWithIndependentClients(t *testing.T) {
	n, base := testNode(t)
	ctx := t.Context()
	const redirect = "http://127.0.0.1:9/callback"
	if _, _, err := n.Clients.Add(ctx, clients.Spec{ID: "shop-app", Name: "Shop", Public: true, RedirectURIs: []string{redirect},
		Audiences: []string{"https://api.shop.example"}}, "test"); err != nil {
		t.Fatal(err)
	}
	_, rsSecret, err := n.Clients.Add(ctx, clients.Spec{ID: "shop-api", Scopes: []string{"orders:read"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	acc, err := n.Accounts.Register(ctx, "minjun@example.com", "김민준", "correct horse battery", "test")
	if err != nil {
		t.Fatal(err)
	}

	provider, err := oidc.NewProvider(ctx, base)
	if err != nil {
		t.Fatalf("discovery through go-oidc: %v", err)
	}
	conf := oauth2.Config{ClientID: "shop-app", Endpoint: provider.Endpoint(), RedirectURL: redirect,
		Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}
	verifier := oauth2.GenerateVerifier()
	state, nonce := "state-123", "nonce-456"
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))

	loc := browserSignIn(t, authURL, "minjun@example.com", "correct horse battery")
	q := loc.Query()
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirect {
		t.Fatalf("redirected to %s, want %s", got, redirect)
	}
	if q.Get("state") != state || q.Get("iss") != base || q.Get("code") == "" {
		t.Fatalf("callback query = %v", q)
	}

	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: "shop-app"}).Verify(ctx, rawID)
	if err != nil {
		t.Fatalf("go-oidc refused the ID token: %v", err)
	}
	if idt.Subject != acc.ID || idt.Nonce != nonce {
		t.Fatalf("ID token sub=%q nonce=%q", idt.Subject, idt.Nonce)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Fatalf("at_hash: %v", err)
	}
	var profile struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	if err := idt.Claims(&profile); err != nil || profile.Name != "김민준" || profile.Email != "minjun@example.com" {
		t.Fatalf("ID token profile = %+v, %v", profile, err)
	}
	ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil || ui.Subject != acc.ID {
		t.Fatalf("userinfo: %+v, %v", ui, err)
	}

	// The resource server introspects the access token.
	introspect := func(token string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/oauth2/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("shop-api", rsSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("introspection: %d %v", resp.StatusCode, err)
		}
		return out
	}
	if got := introspect(tok.AccessToken); got["active"] != true || got["sub"] != acc.ID || got["client_id"] != "shop-app" {
		t.Fatalf("introspection of a fresh token = %v", got)
	}

	// Refresh: x/oauth2 uses the refresh token once the access token expires.
	old := *tok
	expired := *tok
	expired.Expiry = time.Now().Add(-time.Minute)
	refreshed, err := conf.TokenSource(ctx, &expired).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if refreshed.AccessToken == old.AccessToken || refreshed.RefreshToken == old.RefreshToken || refreshed.RefreshToken == "" {
		t.Fatal("refresh did not rotate the tokens")
	}
	if got := introspect(refreshed.AccessToken); got["active"] != true {
		t.Fatalf("refreshed token inactive: %v", got)
	}

	// Reusing the spent refresh token revokes the whole family.
	if _, err := conf.TokenSource(ctx, &expired).Token(); err == nil {
		t.Fatal("a spent refresh token was accepted")
	}
	if got := introspect(refreshed.AccessToken); got["active"] != false {
		t.Fatalf("after refresh-token reuse, the family's access token is still active: %v", got)
	}
	// The reuse is on record with the session it ended (Shared Signals
	// tells receivers which session).
	var reusedSID string
	n.Audit.Query(ctx, audit.Filter{Types: []string{"refresh_reused"}}, func(r audit.Record) error {
		reusedSID, _ = r.Event.Fields["sid"].(string)
		return nil
	})
	var signedIn struct {
		SID string `json:"sid"`
	}
	idt.Claims(&signedIn)
	if reusedSID == "" || reusedSID != signedIn.SID {
		t.Errorf("refresh_reused names session %q; the sign-in's is %q", reusedSID, signedIn.SID)
	}

	// A new sign-in, then RFC 7009 revocation of its refresh token.
	verifier = oauth2.GenerateVerifier()
	loc = browserSignIn(t, conf.AuthCodeURL("s2", oauth2.S256ChallengeOption(verifier)), "minjun@example.com", "correct horse battery")
	tok2, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(base+"/oauth2/revoke", url.Values{"token": {tok2.RefreshToken}, "client_id": {"shop-app"}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if got := introspect(tok2.AccessToken); got["active"] != false {
		t.Fatalf("access token active after its refresh token was revoked: %v", got)
	}
	if got := introspect(tok2.RefreshToken); got["active"] != false {
		t.Fatalf("revoked refresh token active: %v", got)
	}

	// Client credentials for a service.
	cc := clientcredentials.Config{ClientID: "shop-api", ClientSecret: rsSecret, TokenURL: provider.Endpoint().TokenURL, Scopes: []string{"orders:read"}}
	svc, err := cc.Token(ctx)
	if err != nil {
		t.Fatalf("client credentials: %v", err)
	}
	if got := introspect(svc.AccessToken); got["active"] != true || got["sub"] != "shop-api" {
		t.Fatalf("client-credentials token: %v", got)
	}
}
