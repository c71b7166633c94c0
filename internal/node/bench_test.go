package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/sync/errgroup"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/accounts"
	"github.com/custos-dev/custos/internal/clients"
	"github.com/custos-dev/custos/internal/node"
)

// The benchmarks in this file drive a whole node over real HTTP on
// loopback: the load generator and the server share the process and its
// cores. Setup (accounts, clients, sign-ins) runs once in the parent
// benchmark; the measured sub-benchmark runs for every -cpu and -count.
// Results and commands are in docs/performance.md.

const (
	benchClientID = "bench-app"
	benchRedirect = "http://127.0.0.1:9/callback"
	benchAudience = "https://api.bench.example"
	benchPassword = "correct horse battery staple"
)

// benchNode starts a node on a loopback port with the default (OWASP
// minimum) Argon2id parameters. Every request of a benchmark comes from
// 127.0.0.1, so the per-IP sign-in limit is raised out of the way; the
// per-login lockout is left as it is (benchmarks only sign in with the
// right password).
func benchNode(b *testing.B) (*node.Node, string) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cfg := node.Config{DataDir: b.TempDir(), Addr: ln.Addr().String()}
	cfg.Accounts = accounts.Config{Params: accounts.DefaultParams(), IPRate: 1e9, IPBurst: 1 << 30}
	n, err := node.Open(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, ln) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Serve: %v", err)
		}
		n.Close()
	})
	return n, n.Config().Issuer
}

// benchTransport keeps connections alive across requests from many
// goroutines, as a load balancer or a busy relying party would.
func benchTransport(b *testing.B) *http.Transport {
	tr := &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024}
	b.Cleanup(tr.CloseIdleConnections)
	return tr
}

// addBenchApp registers the public client the sign-in and refresh
// benchmarks use.
func addBenchApp(b *testing.B, n *node.Node) {
	b.Helper()
	if _, _, err := n.Clients.Add(b.Context(), clients.Spec{ID: benchClientID, Name: "Bench", Public: true,
		RedirectURIs: []string{benchRedirect}, Audiences: []string{benchAudience}}, "bench"); err != nil {
		b.Fatal(err)
	}
}

// registerAccounts registers count accounts with benchPassword and returns
// their login IDs. Each costs one Argon2id hash; they run concurrently.
func registerAccounts(b *testing.B, n *node.Node, count int) []string {
	b.Helper()
	ids := make([]string, count)
	var g errgroup.Group
	g.SetLimit(2 * runtime.NumCPU())
	for i := range ids {
		ids[i] = fmt.Sprintf("bench%03d@example.com", i)
		g.Go(func() error {
			_, err := n.Accounts.Register(b.Context(), ids[i], fmt.Sprintf("Bench %d", i), benchPassword, "bench")
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	return ids
}

// tokenReply is the part of a token response the benchmarks check.
type tokenReply struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
}

// postToken posts form to the token endpoint, with HTTP Basic client
// authentication if secret is not empty, and decodes a 200 response.
func postToken(hc *http.Client, base string, form url.Values, clientID, secret string) (tokenReply, error) {
	req, err := http.NewRequest("POST", base+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return tokenReply{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		req.SetBasicAuth(clientID, secret)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return tokenReply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return tokenReply{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return tokenReply{}, fmt.Errorf("token endpoint (%s): %d %s", form.Get("grant_type"), resp.StatusCode, body)
	}
	var out tokenReply
	if err := json.Unmarshal(body, &out); err != nil {
		return tokenReply{}, err
	}
	if out.AccessToken == "" {
		return tokenReply{}, fmt.Errorf("token endpoint (%s): no access token", form.Get("grant_type"))
	}
	return out, nil
}

// signIn is one whole sign-in as a new browser and a public client do it:
// GET the hosted login page, POST the form, and redeem the code with PKCE.
// It is safe for concurrent use and reports failures as errors, since it
// runs inside RunParallel.
func signIn(tr http.RoundTripper, base, loginID string) (tokenReply, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return tokenReply{}, err
	}
	browser := &http.Client{Transport: tr, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	verifier := oauth2.GenerateVerifier()
	authURL := base + "/oauth2/authorize?" + url.Values{
		"client_id": {benchClientID}, "redirect_uri": {benchRedirect}, "response_type": {"code"},
		"scope": {"openid profile email"}, "state": {"bench-state"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
	}.Encode()

	resp, err := browser.Get(authURL)
	if err != nil {
		return tokenReply{}, err
	}
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return tokenReply{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return tokenReply{}, fmt.Errorf("login page: %d", resp.StatusCode)
	}
	form := url.Values{"login_id": {loginID}, "password": {benchPassword}}
	for _, m := range hiddenInput.FindAllStringSubmatch(string(page), -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	resp, err = browser.PostForm(base+"/oauth2/authorize", form)
	if err != nil {
		return tokenReply{}, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return tokenReply{}, fmt.Errorf("sign-in POST for %s: %d, want 303", loginID, resp.StatusCode)
	}
	loc, err := resp.Location()
	if err != nil {
		return tokenReply{}, err
	}
	code := loc.Query().Get("code")
	if code == "" {
		return tokenReply{}, fmt.Errorf("sign-in redirect without a code: %s", loc.Query().Get("error"))
	}
	tok, err := postToken(&http.Client{Transport: tr}, base, url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {benchRedirect},
		"client_id": {benchClientID}, "code_verifier": {verifier},
	}, benchClientID, "")
	if err != nil {
		return tokenReply{}, err
	}
	if tok.IDToken == "" || tok.RefreshToken == "" {
		return tokenReply{}, errors.New("code redemption did not return an ID token and a refresh token")
	}
	return tok, nil
}

// requireReceipt fails b unless the node's own verifier, which checks
// receipts in the store, accepts the access token: the benchmarked path
// really recorded what it issued.
func requireReceipt(b *testing.B, n *node.Node, audience, accessToken string) {
	b.Helper()
	if accessToken == "" {
		b.Fatal("the benchmark issued no access token")
	}
	v, err := n.Verifier(audience)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := v.Verify(b.Context(), accessToken); err != nil {
		b.Fatalf("an access token issued during the benchmark does not verify: %v", err)
	}
}

// BenchmarkPasswordLogin is a whole password sign-in at the default
// Argon2id parameters: login page, form POST (Argon2id verification,
// authorization code stored, events recorded) and code redemption with PKCE
// (access, ID and refresh tokens signed, their receipts committed). It
// signs in round-robin across 200 accounts.
//
// Target: ≥ 30 logins/s per core. Run with -cpu 1,2.
func BenchmarkPasswordLogin(b *testing.B) {
	n, base := benchNode(b)
	addBenchApp(b, n)
	ids := registerAccounts(b, n, 200)
	tr := benchTransport(b)

	b.Run("argon2id-default", func(b *testing.B) {
		var (
			mu   sync.Mutex
			next int
			last string
		)
		pick := func() string {
			mu.Lock()
			defer mu.Unlock()
			next++
			return ids[next%len(ids)]
		}
		// Enough sign-ins in flight that the cores hash while others wait
		// for a commit.
		b.SetParallelism(4)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var tok tokenReply
			for pb.Next() {
				var err error
				if tok, err = signIn(tr, base, pick()); err != nil {
					b.Error(err)
					return
				}
			}
			mu.Lock()
			last = tok.AccessToken
			mu.Unlock()
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
		requireReceipt(b, n, benchAudience, last)
	})
}

// BenchmarkRefreshGrant is the refresh-token grant: each op is one POST to
// the token endpoint that spends a refresh token and returns a new access,
// ID and refresh token, committed durably (receipts, the spent mark and the
// token_issued event) before the response. Every worker holds its own
// refresh-token chain and always presents the newest token: a spent one
// would revoke its family.
//
// Target: ≥ 3,000 refreshes/s on 2 cores.
func BenchmarkRefreshGrant(b *testing.B) {
	n, base := benchNode(b)
	addBenchApp(b, n)
	ids := registerAccounts(b, n, 8)
	tr := benchTransport(b)
	hc := &http.Client{Transport: tr}

	// Chains outlive one run of a sub-benchmark: each run takes as many as
	// it has workers and puts them back with their newest token.
	var (
		mu     sync.Mutex
		chains []string
	)
	topUp := func(b *testing.B, want int) {
		var g errgroup.Group
		g.SetLimit(2 * runtime.NumCPU())
		for i := len(chains); i < want; i++ {
			g.Go(func() error {
				tok, err := signIn(tr, base, ids[i%len(ids)])
				if err != nil {
					return err
				}
				mu.Lock()
				chains = append(chains, tok.RefreshToken)
				mu.Unlock()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
	}

	// Each worker is a client with its own connection: 64 of them, and 256,
	// which keeps the server saturated while some wait for a commit.
	for _, clients := range []int{64, 256} {
		parallelism := max(1, clients/runtime.GOMAXPROCS(0))
		b.Run(fmt.Sprintf("clients-%d", clients), func(b *testing.B) {
			topUp(b, parallelism*runtime.GOMAXPROCS(0))
			var last string
			b.SetParallelism(parallelism)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				mu.Lock()
				rt := chains[len(chains)-1]
				chains = chains[:len(chains)-1]
				mu.Unlock()
				var at string
				defer func() {
					mu.Lock()
					chains = append(chains, rt)
					if at != "" {
						last = at
					}
					mu.Unlock()
				}()
				form := url.Values{"grant_type": {"refresh_token"}, "client_id": {benchClientID}, "refresh_token": {""}}
				for pb.Next() {
					form.Set("refresh_token", rt)
					tok, err := postToken(hc, base, form, benchClientID, "")
					if err != nil {
						b.Error(err)
						return
					}
					if tok.RefreshToken == "" || tok.RefreshToken == rt {
						b.Error("refresh did not rotate the refresh token")
						return
					}
					rt, at = tok.RefreshToken, tok.AccessToken
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "refreshes/s")
			requireReceipt(b, n, benchAudience, last)
		})
	}
}

// BenchmarkClientCredentials is the client-credentials grant for a
// confidential client authenticating with HTTP Basic: each op is one POST
// to the token endpoint returning an access token whose receipt and
// token_issued event are committed before the response.
func BenchmarkClientCredentials(b *testing.B) {
	n, base := benchNode(b)
	_, secret, err := n.Clients.Add(b.Context(), clients.Spec{ID: "bench-svc", Scopes: []string{"orders:read"},
		Audiences: []string{"orders"}}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Transport: benchTransport(b)}

	b.Run("loopback", func(b *testing.B) {
		var (
			mu   sync.Mutex
			last string
		)
		b.SetParallelism(32)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			form := url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:read"}}
			var at string
			for pb.Next() {
				tok, err := postToken(hc, base, form, "bench-svc", secret)
				if err != nil {
					b.Error(err)
					return
				}
				at = tok.AccessToken
			}
			mu.Lock()
			if at != "" {
				last = at
			}
			mu.Unlock()
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "grants/s")
		requireReceipt(b, n, "orders", last)
	})
}

// BenchmarkGuardMiddleware measures the guard in-process: a request with a
// token already seen (its signature checked once, its receipt re-checked
// each time), matched, bound to its subject, forwarded to a handler, and
// its data_read event durable in the audit log before the response is
// released. Many requests at once, as a busy service has.
func BenchmarkGuardMiddleware(b *testing.B) {
	n, base := benchNode(b)
	_, secret, err := n.Clients.Add(b.Context(), clients.Spec{ID: "support", Scopes: []string{"orders:read"}, Audiences: []string{"orders"}}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	tok, err := postToken(&http.Client{Transport: benchTransport(b)}, base, url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:read"}}, "support", secret)
	if err != nil {
		b.Fatal(err)
	}
	policy := ordersPolicy(b)
	body := []byte(`{"orders":[{"id":"o_1","total":12000}]}`)
	h, err := n.Guard(b.Context(), node.GuardConfig{Policy: policy, Audience: "orders"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	if err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	b.SetParallelism(guardParallelism)
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// As a server hands a handler a request it read: httptest's
			// NewRequest would parse text through a fresh 4 KiB reader.
			r, err := http.NewRequest("GET", fmt.Sprintf("http://orders.example/customers/acc_%d/orders", seq.Add(1)%1000), nil)
			if err != nil {
				b.Error(err)
				return
			}
			r.RemoteAddr = "192.0.2.7:40000"
			r.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			r.Header.Set(guard.PurposeHeader, "bench")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Errorf("status %d: %s", w.Code, w.Body)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
	// Per core: requests per second of CPU the whole process spent, the
	// load generator's share (building requests, recording responses)
	// included.
	if cpu := processCPU(b) - cpu0; cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "requests/cpu-s")
	}
}

// guardParallelism is the goroutines per GOMAXPROCS sending requests in
// BenchmarkGuardMiddleware; -guard-parallelism changes it.
var guardParallelism = 256

func init() {
	flag.IntVar(&guardParallelism, "guard-parallelism", guardParallelism, "BenchmarkGuardMiddleware's goroutines per GOMAXPROCS")
}

// BenchmarkGuardProxy compares, over loopback HTTP in the same run, a plain
// httputil.ReverseProxy with no checks and the guard's proxy (custos guard)
// in front of the same upstream: token verified (cached, receipt
// re-checked), bound, forwarded, and the access event durable before the
// response. Load generator, proxy and upstream share the machine.
func BenchmarkGuardProxy(b *testing.B) {
	n, base := benchNode(b)
	_, secret, err := n.Clients.Add(b.Context(), clients.Spec{ID: "support", Scopes: []string{"orders:read"}, Audiences: []string{"orders"}}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	tr := benchTransport(b)
	tok, err := postToken(&http.Client{Transport: tr}, base, url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:read"}}, "support", secret)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"orders":[{"id":"o_1","total":12000}]}`)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer upstream.Close()
	up, _ := url.Parse(upstream.URL)
	newProxy := func() *httputil.ReverseProxy {
		return &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(up); pr.SetXForwarded() }, Transport: benchTransport(b)}
	}
	policy := ordersPolicy(b)
	guarded, err := n.Guard(b.Context(), node.GuardConfig{Policy: policy, Audience: "orders"}, newProxy())
	if err != nil {
		b.Fatal(err)
	}
	for _, side := range []struct {
		name string
		h    http.Handler
	}{{"plain", newProxy()}, {"guard", guarded}} {
		b.Run(side.name, func(b *testing.B) {
			srv := httptest.NewServer(side.h)
			defer srv.Close()
			hc := &http.Client{Transport: tr}
			var seq atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", fmt.Sprintf("%s/customers/acc_%d/orders", srv.URL, seq.Add(1)%1000), nil)
					req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
					req.Header.Set(guard.PurposeHeader, "bench")
					resp, err := hc.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
		})
	}
}
