package cli_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/spool"
)

// freeAddr returns a loopback address free to listen on, on an address of
// its own in 127.0.0.0/8, so that a port another test (or process) binds on
// 127.0.0.1 between this call and the listen cannot take it.
func freeAddr(t *testing.T) string {
	t.Helper()
	ip := fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254))
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serviceToken registers a client-credentials client for audience
// "orders" with the command line and gets a token for it from serve.
func serviceToken(t *testing.T, data, addr string) string {
	t.Helper()
	out, err := run(t, "clients", "add", "--data", data, "--id", "support-tool", "--scope", "orders:read",
		"--grant", "client_credentials", "--audience", "orders", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var client struct {
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(out), &client); err != nil || client.Secret == "" {
		t.Fatalf("clients add: %v\n%s", err, out)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:read"}}
	req, _ := http.NewRequest("POST", "http://"+addr+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("support-tool", client.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	if tok.AccessToken == "" {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
	return tok.AccessToken
}

// ordersService is an upstream that counts its calls.
func ordersService(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("X-Forwarded-For") == "" {
			t.Error("the proxy did not set X-Forwarded-For")
		}
		io.WriteString(w, `{"orders":["o_1"],"path":"`+r.URL.Path+`"}`)
	}))
	t.Cleanup(upstream.Close)
	return upstream, &calls
}

func writePolicy(t *testing.T, dir string) string {
	t.Helper()
	policy := filepath.Join(dir, "orders.policy")
	if err := os.WriteFile(policy, []byte("custos-guard-policy v1\nroute GET /customers/{id}/orders\n  subject path id\n  staff-scope orders:read\n  data order_history\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return policy
}

func guardGet(t *testing.T, gaddr, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+gaddr+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Custos-Purpose", "support: refund request 88")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// custos guard, beside custos serve on the same data directory, lets a
// service's data out only for tokens serve issued, and records each access
// in the shared audit log.
func TestGuardProxy(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	addr, gaddr := freeAddr(t), freeAddr(t)
	serveOut := start(t, "serve", "--data", data, "--addr", addr, "--log-level", "warn")
	waitFor(t, "serve", func() bool { return strings.Contains(serveOut.String(), "custos is serving") })
	token := serviceToken(t, data, addr)
	upstream, calls := ordersService(t)
	guardOut := start(t, "guard", "--data", data, "--upstream", upstream.URL, "--policy", writePolicy(t, dir), "--listen", gaddr,
		"--audience", "orders", "--issuer", "http://"+addr)
	waitFor(t, "the guard", func() bool { return strings.Contains(guardOut.String(), "custos guard on "+gaddr) })
	if !strings.Contains(guardOut.String(), "GET /customers/{id}/orders") {
		t.Fatalf("guard does not list its routes:\n%s", guardOut)
	}
	if status, body := guardGet(t, gaddr, "/customers/acc_1/orders", token); status != 200 || !strings.Contains(body, `"path":"/customers/acc_1/orders"`) {
		t.Fatalf("issued token through the guard: %d %s", status, body)
	}
	if status, body := guardGet(t, gaddr, "/customers/acc_1/orders", token[:len(token)-4]+"AAAA"); status != 401 || strings.Contains(body, "o_1") {
		t.Fatalf("tampered token: %d %s", status, body)
	}
	if status, _ := guardGet(t, gaddr, "/customers/acc_1/orders", ""); status != 401 {
		t.Fatalf("no token: %d", status)
	}
	if status, _ := guardGet(t, gaddr, "/admin", token); status != 404 {
		t.Fatalf("unnamed route: %d", status)
	}
	if calls.Load() != 1 {
		t.Fatalf("the service was called %d times, want once", calls.Load())
	}
	q, err := run(t, "audit", "query", "--data", data, "--class", "access", "--json")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"type":"data_read"`, `"purpose":"support: refund request 88"`, `"reason":"bad_signature"`, `"reason":"no_token"`, `"reason":"no_route"`} {
		if !strings.Contains(strings.ReplaceAll(q, " ", ""), strings.ReplaceAll(want, " ", "")) {
			t.Errorf("audit query --class access lacks %s:\n%s", want, q)
		}
	}
}

// custos serve --guard-upstream runs the guard in the same process, on its
// own listener.
func TestServeWithGuard(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	addr, gaddr := freeAddr(t), freeAddr(t)
	upstream, calls := ordersService(t)
	serveOut := start(t, "serve", "--data", data, "--addr", addr, "--log-level", "warn",
		"--guard-upstream", upstream.URL, "--guard-policy", writePolicy(t, dir), "--guard-listen", gaddr, "--guard-audience", "orders")
	waitFor(t, "serve", func() bool { return strings.Contains(serveOut.String(), "custos guard on "+gaddr) })
	token := serviceToken(t, data, addr)
	if status, body := guardGet(t, gaddr, "/customers/acc_1/orders", token); status != 200 || !strings.Contains(body, "o_1") {
		t.Fatalf("issued token through serve's guard: %d %s", status, body)
	}
	if status, _ := guardGet(t, gaddr, "/customers/acc_1/orders", "forged.token.here"); status != 401 || calls.Load() != 1 {
		t.Fatalf("bad token: %d; the service was called %d times, want once", status, calls.Load())
	}
	if _, err := run(t, "serve", "--data", filepath.Join(dir, "other"), "--guard-upstream", upstream.URL); err == nil || !strings.Contains(err.Error(), "--guard-policy is required") {
		t.Fatalf("serve --guard-upstream without a policy: %v", err)
	}
}

// custos guard --spool takes over the access events a previous run kept
// while the audit log was down, and moves them into the log.
func TestGuardDrainsSpool(t *testing.T) {
	dir := t.TempDir()
	data, spoolDir := filepath.Join(dir, "data"), filepath.Join(dir, "spool")
	sp, _, err := spool.Open(spoolDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"acc_spooled_1", "acc_spooled_2"} {
		e := audit.AccessEvent(guard.Access{Time: time.Now(), Outcome: guard.Forwarded, Route: "GET /customers/{id}/orders",
			Method: "GET", Subject: "support-tool", ClientID: "support-tool", DataSubject: sub, Status: 200, Size: 20})
		e.ID = event.NewID()
		b, err := event.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := sp.Put(b); err != nil {
			t.Fatal(err)
		}
	}
	sp.Close()

	upstream, _ := ordersService(t)
	gaddr := freeAddr(t)
	out := start(t, "guard", "--data", data, "--upstream", upstream.URL, "--policy", writePolicy(t, dir), "--listen", gaddr,
		"--audience", "orders", "--spool", spoolDir)
	waitFor(t, "the guard", func() bool { return strings.Contains(out.String(), "custos guard on "+gaddr) })
	if !strings.Contains(out.String(), "holds 2 access events") {
		t.Errorf("the guard does not say what its spool holds:\n%s", out)
	}
	waitFor(t, "the spooled reads in the log", func() bool {
		q, err := run(t, "audit", "query", "--data", data, "--json")
		return err == nil && strings.Contains(q, "acc_spooled_1") && strings.Contains(q, "acc_spooled_2") && strings.Contains(q, `"guard_spool_drained"`)
	})
	if _, err := run(t, "guard", "--data", data, "--upstream", upstream.URL, "--policy", writePolicy(t, dir), "--listen", freeAddr(t),
		"--spool", spoolDir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second guard on the same spool: %v", err)
	}
}
