package node_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/clients"
	"github.com/custos-dev/custos/internal/node"
)

// Real tokens through the guard: a customer reads their own orders and not
// another's; their ID token and refresh token are no access tokens; a
// token for another audience is refused; a revoked key is refused at once.
func TestGuardWithRealTokens(t *testing.T) {
	n, base := testNode(t)
	ctx := t.Context()
	const redirect = "http://127.0.0.1:9/callback"
	if _, _, err := n.Clients.Add(ctx, clients.Spec{ID: "shop-app", Public: true, RedirectURIs: []string{redirect},
		Audiences: []string{"orders"}}, "test"); err != nil {
		t.Fatal(err)
	}
	_, svcSecret, err := n.Clients.Add(ctx, clients.Spec{ID: "mail-svc", Scopes: []string{"orders:read"}, Audiences: []string{"mail"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	kim, err := n.Accounts.Register(ctx, "kim@example.com", "김지우", "correct horse battery", "test")
	if err != nil {
		t.Fatal(err)
	}
	lee, err := n.Accounts.Register(ctx, "lee@example.com", "이서연", "correct horse battery", "test")
	if err != nil {
		t.Fatal(err)
	}
	conf := oauth2.Config{ClientID: "shop-app", RedirectURL: redirect, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: base + "/oauth2/authorize", TokenURL: base + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	loc := browserSignIn(t, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), "kim@example.com", "correct horse battery")
	tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	idToken, _ := tok.Extra("id_token").(string)
	if idToken == "" || tok.RefreshToken == "" {
		t.Fatal("no ID or refresh token")
	}
	otherAudience, err := postToken(http.DefaultClient, base, map[string][]string{"grant_type": {"client_credentials"}, "scope": {"orders:read"}}, "mail-svc", svcSecret)
	if err != nil {
		t.Fatal(err)
	}

	policy, err := guard.ParsePolicy("p", strings.NewReader(`custos-guard-policy v1
route GET /me/orders
    subject token
    data order_history
route GET /customers/{id}/orders
    subject path id
    staff-scope orders:read
    data order_history
`))
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	h, err := n.Guard(ctx, node.GuardConfig{Policy: policy, Audience: "orders"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Write([]byte(`{"orders":[]}`))
	}))
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, token string) (int, string) {
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set(guard.PurposeHeader, "support")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	for _, c := range []struct {
		name, path, token string
		status            int
		reason            string
	}{
		{"own orders", "/me/orders", tok.AccessToken, 200, ""},
		{"own orders by id", "/customers/" + kim.ID + "/orders", tok.AccessToken, 200, ""},
		{"another customer's orders", "/customers/" + lee.ID + "/orders", tok.AccessToken, 403, "subject_mismatch"},
		{"ID token as access token", "/me/orders", idToken, 401, "wrong_type"},
		{"refresh token as access token", "/me/orders", tok.RefreshToken, 401, "malformed"},
		{"token for another audience", "/customers/" + lee.ID + "/orders", otherAudience.AccessToken, 401, "wrong_audience"},
	} {
		status, body := get(c.path, c.token)
		if status != c.status || c.reason != "" && !strings.Contains(body, c.reason) {
			t.Errorf("%s: %d %s; want %d %s", c.name, status, body, c.status, c.reason)
		}
	}
	if calls != 2 {
		t.Fatalf("the service was called %d times, want 2", calls)
	}
	// Revoking the key that signed the token refuses it at once.
	if err := n.Custody.Revoke(ctx, kidOf(t, tok.AccessToken), "test", "exposed"); err != nil {
		t.Fatal(err)
	}
	if status, body := get("/me/orders", tok.AccessToken); status != 401 || !strings.Contains(body, "revoked_key") {
		t.Fatalf("after revoking its key: %d %s", status, body)
	}
}
