package node_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/custos-dev/custos/internal/accounts"
	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/clients"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/keys"
	"github.com/custos-dev/custos/internal/node"
	"github.com/custos-dev/custos/verify"
)

// clock is a settable clock shared by custody, the issuer and verifiers.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// startNode starts a node on loopback after letting mutate adjust its config.
func startNode(t *testing.T, mutate func(*node.Config)) (*node.Node, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.Config{DataDir: t.TempDir(), Addr: ln.Addr().String()}
	if mutate != nil {
		mutate(&cfg)
	}
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

// service registers a confidential client-credentials client for audience
// "orders" and returns a function that fetches a new access token for it.
func service(t *testing.T, n *node.Node, base string) (secret string, token func() string) {
	t.Helper()
	_, secret, err := n.Clients.Add(t.Context(), clients.Spec{ID: "orders-svc", Scopes: []string{"orders:read"}, Audiences: []string{"orders"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return secret, func() string {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/oauth2/token", strings.NewReader("grant_type=client_credentials&scope=orders:read"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("orders-svc", secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("client credentials: %d %v", resp.StatusCode, err)
		}
		return out.AccessToken
	}
}

func introspectActive(t *testing.T, base, clientID, secret, token string) bool {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/oauth2/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Active bool `json:"active"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("introspection: %d %v", resp.StatusCode, err)
	}
	return out.Active
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	json.Unmarshal(h, &hdr)
	return hdr.Kid
}

func jwksKids(t *testing.T, base string) []string {
	t.Helper()
	resp, err := http.Get(base + "/oauth2/jwks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
	}
	return kids
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestRotation: a token signed before a rotation verifies until it expires;
// the successor was in the JWKS before it signed; a revoked key's tokens are
// refused at once; no kid ever repeats.
func TestRotation(t *testing.T) {
	clk := &clock{}
	n, base := startNode(t, func(c *node.Config) {
		c.Keys = keys.Config{JWKSMaxAge: time.Minute, Now: clk.Now}
		c.Issuance.Now = clk.Now
	})
	secret, token := service(t, n, base)
	v, err := n.Verifier("orders")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	before := token()
	oldKid := kidOf(t, before)
	published := jwksKids(t, base)
	if len(published) != 2 || !has(published, oldKid) {
		t.Fatalf("JWKS before rotation = %v, want the active key and its pending successor", published)
	}

	clk.Advance(3 * time.Minute) // past the publish lead (2 × JWKS max-age)
	if err := n.Custody.Rotate(ctx, "test", "scheduled"); err != nil {
		t.Fatal(err)
	}
	after := token()
	newKid := kidOf(t, after)
	if newKid == oldKid || !has(published, newKid) {
		t.Fatalf("after rotation the token is signed by %s; it must be the successor published before (%v)", newKid, published)
	}
	if _, err := v.Verify(ctx, before); err != nil {
		t.Fatalf("a token signed before the rotation no longer verifies: %v", err)
	}
	if !introspectActive(t, base, "orders-svc", secret, before) {
		t.Fatal("introspection refuses a pre-rotation token before it expires")
	}
	clk.Advance(8 * time.Minute) // past the old token's expiry
	if _, err := v.Verify(ctx, before); verify.ReasonOf(err) != verify.ReasonExpired {
		t.Fatalf("expired pre-rotation token: %v, want expired", err)
	}

	// Emergency revoke of the active key.
	current := token()
	if err := n.Custody.Revoke(ctx, newKid, "test", "key exposed"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, current); verify.ReasonOf(err) != verify.ReasonRevokedKey {
		t.Fatalf("token of a revoked key: %v, want revoked_key", err)
	}
	if introspectActive(t, base, "orders-svc", secret, current) {
		t.Fatal("introspection accepts a token of a revoked key")
	}
	if has(jwksKids(t, base), newKid) {
		t.Fatal("the revoked key is still in the JWKS")
	}
	next := token()
	if kidOf(t, next) == newKid {
		t.Fatal("custos still signs with the revoked key")
	}
	if _, err := v.Verify(ctx, next); err != nil {
		t.Fatalf("token after emergency rotation: %v", err)
	}

	// Many rotations: kids never repeat.
	seen := map[string]bool{}
	for range 10 {
		clk.Advance(3 * time.Minute)
		if err := n.Custody.Rotate(ctx, "test", "churn"); err != nil {
			t.Fatal(err)
		}
	}
	list, err := n.Custody.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range list {
		if seen[k.ID] {
			t.Fatalf("kid %s repeats", k.ID)
		}
		seen[k.ID] = true
	}
	if len(list) < 13 {
		t.Fatalf("%d keys after 12 rotations", len(list))
	}
}

// TestStolenLegacyKey is the 2025 case: custos holds a legacy key whose copy
// an insider kept. Tokens custos issues with it work; tokens the insider
// mints with the copy — for real, random and non-existent customers — are
// refused by introspection, by the in-process verifier and by a remote
// verifier, and each refusal at custos records a forged_token event.
func TestStolenLegacyKey(t *testing.T) {
	n, base := startNode(t, nil)
	ctx := t.Context()
	kid, forge := stolenKey(t, n, base)
	secret, token := service(t, n, base)
	genuine := token()
	if kidOf(t, genuine) != kid {
		t.Fatalf("custos signs with %s, want the imported key %s", kidOf(t, genuine), kid)
	}
	acc, err := n.Accounts.Register(ctx, "victim@example.com", "Victim", "correct horse battery", "test")
	if err != nil {
		t.Fatal(err)
	}

	local, err := n.Verifier("orders")
	if err != nil {
		t.Fatal(err)
	}
	remoteKeys, err := verify.NewRemoteKeySet(ctx, verify.JWKSConfig{Issuer: base})
	if err != nil {
		t.Fatal(err)
	}
	intro, err := verify.NewIntrospector(ctx, verify.IntrospectorConfig{Issuer: base, ClientID: "orders-svc", ClientSecret: verify.Secret(secret)})
	if err != nil {
		t.Fatal(err)
	}
	remote, err := verify.New(verify.Config{Issuer: base, Audience: "orders", Keys: remoteKeys, Receipts: intro})
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]*verify.Verifier{"local": local, "remote": remote} {
		if _, err := v.Verify(ctx, genuine); err != nil {
			t.Fatalf("%s verifier refuses a token custos issued with the imported key: %v", name, err)
		}
	}

	forged := map[string]string{"real": acc.ID, "random": "acc_" + strings.ToLower(rand.Text()), "nonexistent": "nobody"}
	var signatures []string
	for kind, sub := range forged {
		tok := forge(sub)
		signatures = append(signatures, tok[strings.LastIndexByte(tok, '.')+1:])
		for name, v := range map[string]*verify.Verifier{"local": local, "remote": remote} {
			if _, err := v.Verify(ctx, tok); verify.ReasonOf(err) != verify.ReasonForged {
				t.Errorf("%s verifier, forged token for a %s subject: %v, want forged_token", name, kind, err)
			}
		}
		if introspectActive(t, base, "orders-svc", secret, tok) {
			t.Errorf("introspection calls a forged token for a %s subject active", kind)
		}
	}

	// Every forgery presented at custos is on record, without the token.
	var recs []event.Event
	err = n.Audit.Query(ctx, audit.Filter{Types: []string{"forged_token"}}, func(r audit.Record) error {
		recs = append(recs, r.Event)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	subjects := map[string]int{}
	for _, r := range recs {
		if r.Fields["kid"] != kid || r.Fields["jti"] == "" {
			t.Errorf("forged_token event lacks the token's kid and jti: %+v", r)
		}
		b, _ := json.Marshal(r)
		for _, sig := range signatures {
			if strings.Contains(string(b), sig) {
				t.Errorf("forged_token event contains the token itself: %s", b)
			}
		}
		subjects[r.Subject]++
	}
	for kind, sub := range forged {
		// Once by the remote verifier's introspection, once by ours.
		if subjects[sub] < 2 {
			t.Errorf("forged token for a %s subject recorded %d times, want at least 2", kind, subjects[sub])
		}
	}
}

// TestLogoutPasswordChangeAndDisableRevoke: each ends a customer's tokens
// at once (A16).
func TestLogoutPasswordChangeAndDisableRevoke(t *testing.T) {
	n, base := startNode(t, nil)
	ctx := t.Context()
	const redirect = "http://127.0.0.1:9/cb"
	if _, _, err := n.Clients.Add(ctx, clients.Spec{ID: "app", Public: true, RedirectURIs: []string{redirect}}, "test"); err != nil {
		t.Fatal(err)
	}
	secret, _ := service(t, n, base)
	var idToken string
	signIn := func(login, password string) (access, refresh string) {
		verifier := strings.Repeat("k", 43)
		q := url.Values{"client_id": {"app"}, "redirect_uri": {redirect}, "response_type": {"code"}, "scope": {"openid"},
			"code_challenge": {pkce(verifier)}, "code_challenge_method": {"S256"}}
		loc := browserSignIn(t, base+"/oauth2/authorize?"+q.Encode(), login, password)
		resp, err := http.PostForm(base+"/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
			"client_id": {"app"}, "redirect_uri": {redirect}, "code_verifier": {verifier}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ AccessToken, RefreshToken string }
		var raw map[string]any
		json.NewDecoder(resp.Body).Decode(&raw)
		out.AccessToken, _ = raw["access_token"].(string)
		out.RefreshToken, _ = raw["refresh_token"].(string)
		idToken, _ = raw["id_token"].(string)
		if out.AccessToken == "" || out.RefreshToken == "" {
			t.Fatalf("sign-in tokens: %v", raw)
		}
		return out.AccessToken, out.RefreshToken
	}
	refreshOK := func(rt string) bool {
		resp, err := http.PostForm(base+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}

	a, err := n.Accounts.Register(ctx, "a@example.com", "A", "first password 1", "test")
	if err != nil {
		t.Fatal(err)
	}

	// RP-initiated logout with the ID token ends that session only.
	at, rt := signIn("a@example.com", "first password 1")
	otherAT, _ := signIn("a@example.com", "first password 1")
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(base + "/oauth2/logout?" + url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {"https://evil.example/"}}.Encode())
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("logout to an unregistered URI: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if !introspectActive(t, base, "orders-svc", secret, otherAT) {
		t.Fatal("a refused logout revoked tokens")
	}
	resp, err = noRedirect.Get(base + "/oauth2/logout?" + url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {redirect}, "state": {"bye"}}.Encode())
	if err != nil || resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != redirect+"?state=bye" {
		t.Fatalf("logout: %v %v %q", resp.StatusCode, err, resp.Header.Get("Location"))
	}
	resp.Body.Close()
	if introspectActive(t, base, "orders-svc", secret, otherAT) {
		t.Fatal("access token still active after logout")
	}
	if !introspectActive(t, base, "orders-svc", secret, at) {
		t.Fatal("logout ended another session too")
	}

	// A password change ends every session.
	if err := n.Accounts.ChangePassword(ctx, a.ID, "first password 1", "second password 2", accounts.Source{IP: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if introspectActive(t, base, "orders-svc", secret, at) {
		t.Fatal("access token still active after a password change")
	}
	if refreshOK(rt) {
		t.Fatal("refresh token still works after a password change")
	}

	b, err := n.Accounts.Register(ctx, "b@example.com", "B", "b password 123", "test")
	if err != nil {
		t.Fatal(err)
	}
	at, rt = signIn("b@example.com", "b password 123")
	if err := n.Accounts.Disable(ctx, b.ID, "test", "fraud report"); err != nil {
		t.Fatal(err)
	}
	if introspectActive(t, base, "orders-svc", secret, at) {
		t.Fatal("access token still active after the account was disabled")
	}
	if refreshOK(rt) {
		t.Fatal("refresh token still works after the account was disabled")
	}
}

// stolenKey imports an Ed25519 key as a legacy key (so custos signs with
// it) and returns its kid and a forger: tokens for audience "orders" from
// client orders-svc, well signed with the key, that custos never issued.
func stolenKey(t *testing.T, n *node.Node, base string) (string, func(sub string) string) {
	t.Helper()
	kid, forge := stolenKeyFor(t, n, base, "orders")
	return kid, func(sub string) string { return forge(sub, "orders-svc", "orders:read") }
}

// stolenKeyFor is stolenKey for tokens naming aud, with the client and
// scope given.
func stolenKeyFor(t *testing.T, n *node.Node, base, aud string) (string, func(sub, client, scope string) string) {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	info, err := n.Custody.Import(t.Context(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), "test")
	if err != nil {
		t.Fatal(err)
	}
	return info.ID, func(sub, client, scope string) string {
		now := time.Now()
		hdr, _ := json.Marshal(map[string]string{"alg": "EdDSA", "typ": "at+jwt", "kid": info.ID})
		claims, _ := json.Marshal(map[string]any{
			"iss": base, "sub": sub, "aud": aud, "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
			"jti": rand.Text(), "client_id": client, "scope": scope,
		})
		in := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(claims)
		sig, _ := key.Sign(rand.Reader, []byte(in), crypto.Hash(0))
		return in + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
}
