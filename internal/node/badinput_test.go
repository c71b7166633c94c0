package node_test

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/custos-dev/custos/internal/clients"
)

func pkce(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestBadInputIsRefusedWithoutStateChange sends malformed, oversized and
// hostile requests to every endpoint: each gets a 4xx (never a 5xx), and an
// authorization code survives every bad attempt to redeem it.
func TestBadInputIsRefusedWithoutStateChange(t *testing.T) {
	n, base := testNode(t)
	ctx := t.Context()
	const redirect = "http://127.0.0.1:9/cb"
	if _, _, err := n.Clients.Add(ctx, clients.Spec{ID: "app", Public: true, RedirectURIs: []string{redirect}}, "test"); err != nil {
		t.Fatal(err)
	}
	_, secret, err := n.Clients.Add(ctx, clients.Spec{ID: "rs", Scopes: []string{"x"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Accounts.Register(ctx, "kim@example.com", "Kim", "correct horse battery", "test"); err != nil {
		t.Fatal(err)
	}
	verifier := strings.Repeat("v", 50)
	authQ := url.Values{"client_id": {"app"}, "redirect_uri": {redirect}, "response_type": {"code"}, "scope": {"openid"},
		"code_challenge": {pkce(verifier)}, "code_challenge_method": {"S256"}, "state": {"s"}}
	loc := browserSignIn(t, base+"/oauth2/authorize?"+authQ.Encode(), "kim@example.com", "correct horse battery")
	code := loc.Query().Get("code")
	good := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {"app"},
		"redirect_uri": {redirect}, "code_verifier": {verifier}}

	with := func(v url.Values, k, val string) string {
		c := url.Values{}
		for kk, vv := range v {
			c[kk] = vv
		}
		c.Set(k, val)
		return c.Encode()
	}
	form := "application/x-www-form-urlencoded"
	cases := []struct {
		name, method, path, ctype, body string
		header                          map[string]string
		want                            int
	}{
		{"token wrong redirect", "POST", "/oauth2/token", form, with(good, "redirect_uri", redirect+"x"), nil, 400},
		{"token wrong verifier", "POST", "/oauth2/token", form, with(good, "code_verifier", strings.Repeat("w", 50)), nil, 400},
		{"token short verifier", "POST", "/oauth2/token", form, with(good, "code_verifier", "abc"), nil, 400},
		{"token other client", "POST", "/oauth2/token", form, with(good, "client_id", "nobody"), nil, 401},
		{"token duplicate param", "POST", "/oauth2/token", form, good.Encode() + "&code=again", nil, 400},
		{"token invalid utf8", "POST", "/oauth2/token", form, with(good, "redirect_uri", "\xff\xfe"), nil, 400},
		{"token json body", "POST", "/oauth2/token", "application/json", `{"grant_type":"authorization_code"}`, nil, 400},
		{"token malformed form", "POST", "/oauth2/token", form, "%zz=%", nil, 400},
		{"token oversized", "POST", "/oauth2/token", form, "a=" + strings.Repeat("b", 100<<10), nil, 413},
		{"token password grant", "POST", "/oauth2/token", form, "grant_type=password&client_id=app&username=a&password=b", nil, 400},
		{"token implicit", "POST", "/oauth2/token", form, "grant_type=implicit&client_id=app", nil, 400},
		{"token no grant", "POST", "/oauth2/token", form, "client_id=app", nil, 400},
		{"token bad basic", "POST", "/oauth2/token", form, good.Encode(), map[string]string{"Authorization": "Basic !!!"}, 401},
		{"authorize unknown client", "GET", "/oauth2/authorize?" + with(authQ, "client_id", "nobody"), "", "", nil, 400},
		{"authorize wrong redirect", "GET", "/oauth2/authorize?" + with(authQ, "redirect_uri", "https://evil.example/cb"), "", "", nil, 400},
		{"authorize invalid utf8", "GET", "/oauth2/authorize?client_id=%ff%fe", "", "", nil, 400},
		{"authorize duplicate", "GET", "/oauth2/authorize?" + authQ.Encode() + "&client_id=app", "", "", nil, 400},
		{"login no csrf", "POST", "/oauth2/authorize", form, with(authQ, "login_id", "kim@example.com") + "&password=correct+horse+battery", nil, 403},
		{"login cross origin", "POST", "/oauth2/authorize", form, authQ.Encode(), map[string]string{"Origin": "https://evil.example"}, 403},
		{"introspect no auth", "POST", "/oauth2/introspect", form, "token=abc", nil, 401},
		{"introspect public client", "POST", "/oauth2/introspect", form, "token=abc&client_id=app", nil, 400},
		{"revoke no token", "POST", "/oauth2/revoke", form, "client_id=app", nil, 400},
		{"userinfo no token", "GET", "/oauth2/userinfo", "", "", nil, 401},
		{"userinfo garbage token", "GET", "/oauth2/userinfo", "", "", map[string]string{"Authorization": "Bearer a.b.c"}, 401},
		{"unknown path", "GET", "/oauth2/nothing", "", "", nil, 404},
		{"wrong method", "DELETE", "/oauth2/token", "", "", nil, 405},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
		})
	}

	// A basic-auth request with the resource server's real secret but a
	// code for another client is refused too.
	req, _ := http.NewRequest("POST", base+"/oauth2/token", strings.NewReader(with(good, "client_id", "rs")))
	req.Header.Set("Content-Type", form)
	req.SetBasicAuth("rs", secret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Fatalf("code redeemed by another client: %v %v", resp.StatusCode, err)
	}

	// Oversized headers are refused by the server before any handler.
	req, _ = http.NewRequest("GET", base+"/oauth2/jwks", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("oversized header: %d, want 431", resp.StatusCode)
		}
		resp.Body.Close()
	}

	// After all that, the code is still unspent and redeems once.
	resp, err := http.PostForm(base+"/oauth2/token", good)
	if err != nil || resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("the code did not survive the bad attempts: %v %s", err, b)
	}
	resp.Body.Close()
	// And a replay is refused.
	resp, _ = http.PostForm(base+"/oauth2/token", good)
	if resp.StatusCode != 400 {
		t.Fatalf("replayed code: %d, want 400", resp.StatusCode)
	}
	resp.Body.Close()
}
