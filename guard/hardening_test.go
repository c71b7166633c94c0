package guard_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/custos-dev/custos/guard"
)

// proxied puts upstream behind a real httputil.ReverseProxy behind the
// guard, served over loopback, as custos guard does.
func proxied(t *testing.T, policy string, upstream http.HandlerFunc, maxResponse int64) (*httptest.Server, *recorder) {
	t.Helper()
	up := httptest.NewServer(upstream)
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	p, err := guard.ParsePolicy("p", strings.NewReader(policy))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	g, err := guard.New(guard.Config{Policy: p, Recorder: rec, MaxResponseBytes: maxResponse, Logger: slogDiscard(), Verifier: tokens{
		"kim":     claims("acc_kim", "shop", "profile"),
		"support": claims("op_park", "console", "customers:read"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }}
	srv := httptest.NewServer(g.Wrap(proxy))
	t.Cleanup(srv.Close)
	return srv, rec
}

func do(t *testing.T, srv *httptest.Server, method, path string, header map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	if req == nil {
		req = &http.Request{Method: method, URL: &url.URL{Scheme: "http", Host: strings.TrimPrefix(srv.URL, "http://"), Opaque: path}, Header: http.Header{}}
	}
	for k, v := range header {
		req.Header[k] = []string{v} // as sent, not canonicalised
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

const profilePolicy = "custos-guard-policy v1\nroute GET /me/profile\n subject token\n scope profile\n data name\nroute GET /files/{path...}\n subject token\n data name\nroute GET /customers/{id}/orders\n subject path id\n staff-scope customers:read\n data order_history\n"

// A client cannot remove or imitate the identity the guard sends upstream:
// not by naming the guard's headers in Connection, nor with spellings some
// servers read as the same header; nor can it send headers that reroute.
func TestIdentityHeadersSurviveAProxy(t *testing.T) {
	var seen http.Header
	srv, _ := proxied(t, profilePolicy, func(w http.ResponseWriter, r *http.Request) { seen = r.Header.Clone() }, 0)
	resp := do(t, srv, "GET", "/me/profile", map[string]string{
		"Authorization":          "Bearer kim",
		"Custos_Subject":         "acc_victim",
		"Custos_Data_Subject":    "acc_victim",
		"Connection":             "keep-alive, Custos-Subject, Custos-Data-Subject",
		"X-Original-URL":         "/customers/acc_victim/orders",
		"X-Http-Method-Override": "DELETE",
	})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if seen.Get(guard.SubjectHeader) != "acc_kim" || seen.Get(guard.DataSubjectHeader) != "acc_kim" {
		t.Fatalf("upstream saw subject %q, data subject %q; want acc_kim", seen.Get(guard.SubjectHeader), seen.Get(guard.DataSubjectHeader))
	}
	for k := range seen {
		n := strings.ReplaceAll(strings.ToLower(k), "_", "-")
		if n == "custos-subject" && k != guard.SubjectHeader || n == "x-original-url" || n == "x-http-method-override" {
			t.Errorf("upstream saw %s: %q", k, seen[k])
		}
	}
}

// A second purpose cannot be slipped in under another spelling: the server
// folds the case of a name into one header, which is then sent twice, and
// a spelling with _ is not the guard's and never reaches the upstream.
func TestPurposeSpellings(t *testing.T) {
	var seen http.Header
	var calls atomic.Int64
	srv, rec := proxied(t, profilePolicy, func(w http.ResponseWriter, r *http.Request) { calls.Add(1); seen = r.Header.Clone() }, 0)
	resp := do(t, srv, "GET", "/customers/acc_lee/orders", map[string]string{
		"Authorization": "Bearer support", "Custos-Purpose": "support", "custos-purpose": "marketing",
	})
	if resp.StatusCode != 400 || calls.Load() != 0 || rec.last(t).Reason != guard.ReasonBadPurpose {
		t.Fatalf("two purposes: status %d, upstream called %d times, recorded %s", resp.StatusCode, calls.Load(), rec.last(t).Reason)
	}
	resp = do(t, srv, "GET", "/customers/acc_lee/orders", map[string]string{
		"Authorization": "Bearer support", "Custos-Purpose": "support: ticket 4411", "Custos_Purpose": "marketing",
	})
	if resp.StatusCode != 200 || rec.last(t).Purpose != "support: ticket 4411" {
		t.Fatalf("status %d, recorded purpose %q", resp.StatusCode, rec.last(t).Purpose)
	}
	if got := seen.Values(guard.PurposeHeader); len(got) != 1 || got[0] != "support: ticket 4411" {
		t.Fatalf("upstream saw purposes %q", got)
	}
	for k := range seen {
		if strings.ReplaceAll(strings.ToLower(k), "_", "-") == "custos-purpose" && k != guard.PurposeHeader {
			t.Errorf("upstream saw %s: %q", k, seen[k])
		}
	}
}

// A path an upstream might decode into another is refused before it is
// matched or forwarded.
func TestAmbiguousPathsRefused(t *testing.T) {
	var calls atomic.Int64
	srv, rec := proxied(t, profilePolicy, func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }, 0)
	for _, path := range []string{
		"/files/%2e%2e/%2e%2e/admin/export",
		"/files/%2E%2E%2Fadmin",
		"/customers/%2e%2e/orders",
		"/customers/..%2f..%2fadmin/orders",
		"/customers/a%5cb/orders",
		"/customers/x%0d%0ay/orders",
		"/files/a\\b",
	} {
		resp := do(t, srv, "GET", path, map[string]string{"Authorization": "Bearer support", "Custos-Purpose": "audit"})
		if resp.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", path, resp.StatusCode)
		}
	}
	if calls.Load() != 0 {
		t.Fatalf("the upstream saw %d ambiguous paths", calls.Load())
	}
	for _, a := range rec.all {
		if a.Outcome != guard.Refused || a.Reason != guard.ReasonBadRequest {
			t.Errorf("recorded %s/%s for %s", a.Outcome, a.Reason, a.Path)
		}
	}
}

// A response over the bound is refused whole, and the refusal recorded,
// also when a real proxy writes it.
func TestTooLargeThroughAProxy(t *testing.T) {
	srv, rec := proxied(t, profilePolicy, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("personal data ", 400))
	}, 1<<10)
	resp := do(t, srv, "GET", "/me/profile", map[string]string{"Authorization": "Bearer kim"})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 502 || strings.Contains(string(body), "personal data") {
		t.Fatalf("status %d, body %.60q", resp.StatusCode, body)
	}
	if a := rec.last(t); a.Outcome != guard.Refused || a.Reason != guard.ReasonResponseTooLarge {
		t.Fatalf("recorded %s/%s", a.Outcome, a.Reason)
	}
}

// HEAD gets the upstream's Content-Length, not the empty body's.
func TestHeadKeepsContentLength(t *testing.T) {
	srv, _ := proxied(t, profilePolicy, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1234")
	}, 0)
	resp := do(t, srv, "HEAD", "/me/profile", map[string]string{"Authorization": "Bearer kim"})
	if resp.StatusCode != 200 || resp.ContentLength != 1234 {
		t.Fatalf("HEAD: status %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
	}
}

// Without credentials, the challenge carries no error (RFC 6750 §3.1).
func TestChallengeWithoutCredentials(t *testing.T) {
	srv, _ := proxied(t, profilePolicy, func(http.ResponseWriter, *http.Request) {}, 0)
	if got := do(t, srv, "GET", "/me/profile", nil).Header.Get("WWW-Authenticate"); got != "Bearer" {
		t.Fatalf("WWW-Authenticate %q", got)
	}
	if got := do(t, srv, "GET", "/me/profile", map[string]string{"Authorization": "Bearer forged"}).Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
		t.Fatalf("WWW-Authenticate %q for a bad token", got)
	}
}

// The responses held at once are bounded across requests: past the bound,
// a request is refused (overloaded) rather than held, and the bytes of
// finished requests are given back.
func TestHeldBytesBounded(t *testing.T) {
	p, err := guard.ParsePolicy("p", strings.NewReader(profilePolicy))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	g, err := guard.New(guard.Config{Policy: p, Recorder: rec, MaxResponseBytes: 1 << 20, MaxHeldBytes: 3 << 10,
		Verifier: tokens{"kim": claims("acc_kim", "shop", "profile")}, Logger: slogDiscard()})
	if err != nil {
		t.Fatal(err)
	}
	// The first request's upstream waits while the second runs, so both
	// hold their responses at once.
	release, started := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	h := g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("a", 2<<10))
		if first.CompareAndSwap(false, true) {
			close(started)
			<-release
		}
	}))
	get := func() int {
		r := httptest.NewRequest("GET", "/me/profile", nil)
		r.Header.Set("Authorization", "Bearer kim")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	done := make(chan int)
	go func() { done <- get() }()
	<-started
	if status := get(); status != 503 || rec.last(t).Reason != guard.ReasonOverloaded {
		t.Fatalf("second response while the first is held: %d, recorded %s", status, rec.last(t).Reason)
	}
	close(release)
	if status := <-done; status != 200 {
		t.Fatalf("first response: %d", status)
	}
	// Its bytes were given back: another response fits.
	if status := get(); status != 200 {
		t.Fatalf("after the first finished: %d", status)
	}
}
