package node_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/detect"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/node"
	"github.com/custos-dev/custos/internal/spool"
)

// The 2025 case through the guard: a token custos issued reads a
// customer's orders, and its read is in the audit log; a token minted with
// a real signing key but never issued is refused as forged, recorded, and
// never reaches the service.
func TestGuardInFrontOfAService(t *testing.T) {
	n, base := startNode(t, nil)
	ctx := t.Context()
	_, forge := stolenKey(t, n, base)
	_, token := service(t, n, base)
	policy, err := guard.ParsePolicy("orders.policy", strings.NewReader(`custos-guard-policy v1
route GET /customers/{id}/orders
    subject path id
    staff-scope orders:read
    data order_history address
`))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	h, err := n.Guard(t.Context(), node.GuardConfig{Policy: policy, Audience: "orders"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.WriteString(w, `{"orders":[{"id":"o_1","address":"Seoul"}]}`)
	}))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(tok string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/customers/acc_victim/orders", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set(guard.PurposeHeader, "support: order")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if status, body := get(token()); status != 200 || !strings.Contains(body, "Seoul") {
		t.Fatalf("issued token: %d %s", status, body)
	}
	if status, body := get(forge("orders-svc")); status != 401 || !strings.Contains(body, "forged_token") || strings.Contains(body, "Seoul") {
		t.Fatalf("forged token: %d %s", status, body)
	}
	if calls.Load() != 1 {
		t.Fatalf("the service was called %d times, want once", calls.Load())
	}
	var got []string
	forgedJTI := ""
	err = n.Audit.Query(ctx, audit.Filter{Classes: []event.Class{event.ClassAccess}}, func(r audit.Record) error {
		got = append(got, r.Event.Type+" "+r.Event.Actor+" "+r.Event.Subject+" "+fmtReason(r.Event))
		if fmtReason(r.Event) == "forged_token" {
			forgedJTI, _ = r.Event.Fields["jti"].(string)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The forged token's refusal names whom it claimed to be, as the
	// forger wrote it: the incident's scope needs it.
	want := []string{"data_read orders-svc acc_victim -", "access_refused orders-svc acc_victim forged_token"}
	if forgedJTI == "" {
		t.Error("the forged token's jti is not recorded")
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("access events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The guard's start names its policy.
	var started []event.Event
	err = n.Audit.Query(ctx, audit.Filter{Types: []string{node.EventGuardStarted}}, func(r audit.Record) error {
		started = append(started, r.Event)
		return nil
	})
	if err != nil || len(started) != 1 || started[0].Fields["policy_sha256"] != policy.Digest || started[0].Fields["monitored"] != "" {
		t.Fatalf("guard_started events %+v (%v)", started, err)
	}
}

// ordersPolicy is a policy with one staff route: a customer's orders, for
// tokens with orders:read.
func ordersPolicy(t testing.TB) *guard.Policy {
	t.Helper()
	p, err := guard.ParsePolicy("orders.policy", strings.NewReader("custos-guard-policy v1\nroute GET /customers/{id}/orders\n subject path id\n staff-scope orders:read\n data order_history\n"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func fmtReason(e event.Event) string {
	if r, ok := e.Fields["reason"].(string); ok {
		return r
	}
	return "-"
}

// Bad input to the guard gets a clear 4xx, never reaches the service and is
// never recorded as a read: oversized headers, request smuggling attempts
// with conflicting Content-Length and Transfer-Encoding, malformed paths.
func TestGuardBadInput(t *testing.T) {
	n, _ := startNode(t, nil)
	policy := ordersPolicy(t)
	var calls atomic.Int64
	h, err := n.Guard(t.Context(), node.GuardConfig{Policy: policy, Audience: "orders"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.WriteString(w, "personal data")
	}))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.ServeGuard(ctx, ln, h, nil) }()
	defer func() { cancel(); <-done }()

	raw := func(req string) int {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: %v", req[:min(len(req), 60)], err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		name, req string
		status    int
	}{
		{"huge header", "GET /customers/acc_1/orders HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431},
		{"Content-Length and Transfer-Encoding", "GET /customers/acc_1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"Content-Length and Transfer-Encoding on a POST", "POST /customers/acc_1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 404},
		{"a body on a read", "GET /customers/acc_1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"two Content-Lengths", "GET /customers/acc_1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd", 400},
		{"bad escape", "GET /customers/%ZZ/orders HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"invalid UTF-8 in a header name", "GET /customers/acc_1/orders HTTP/1.1\r\nHost: x\r\nX-\xff: 1\r\n\r\n", 400},
		{"no Host", "GET /customers/acc_1/orders HTTP/1.1\r\n\r\n", 400},
		{"path traversal", "GET /customers/../admin/orders HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"double slash", "GET /customers//orders HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"invalid UTF-8 in the path", "GET /customers/%ff%fe/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x.y.z\r\n\r\n", 401},
	}
	for _, tc := range tests {
		if got := raw(tc.req); got != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.status)
		}
	}
	if calls.Load() != 0 {
		t.Fatalf("bad input reached the service %d times", calls.Load())
	}
	reads := 0
	err = n.Audit.Query(t.Context(), audit.Filter{Types: []string{audit.EventDataRead, audit.EventAccessMonitored}}, func(audit.Record) error {
		reads++
		return nil
	})
	if err != nil || reads != 0 {
		t.Fatalf("%d reads recorded (%v)", reads, err)
	}
}

// A token the guard has seen, and cached, is refused within the revocation
// epoch's interval once it is revoked.
func TestGuardSeesRevocation(t *testing.T) {
	n, base := startNode(t, nil)
	_, token := service(t, n, base)
	policy := ordersPolicy(t)
	h, err := n.Guard(t.Context(), node.GuardConfig{Policy: policy, Audience: "orders"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "orders")
	}))
	if err != nil {
		t.Fatal(err)
	}
	tok := token()
	get := func() int {
		r := httptest.NewRequest("GET", "/customers/acc_1/orders", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set(guard.PurposeHeader, "audit")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for range 3 {
		if status := get(); status != 200 {
			t.Fatalf("issued token: %d", status)
		}
	}
	if err := n.Store.RevokeReceipt(t.Context(), jtiOf(t, tok), time.Now()); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	for get() == 200 {
		if time.Since(revoked) > time.Second {
			t.Fatal("the guard still accepts a token revoked a second ago")
		}
		time.Sleep(time.Millisecond)
	}
	if d := time.Since(revoked); d > 100*time.Millisecond {
		t.Errorf("the revocation took %v to reach the guard", d)
	}
	if status := get(); status != 401 {
		t.Fatalf("revoked token: %d", status)
	}
}

// With a spool, the guard answers while the audit log is down: each read
// is kept on local disk before its response leaves, and once the log is
// back (here: the guard restarted on it) every kept read goes into it,
// once. Without a spool the same guard fails closed.
func TestGuardSpoolsWhileTheLogIsDown(t *testing.T) {
	n, base := startNode(t, nil)
	_, token := service(t, n, base)
	tok := token()
	policy := ordersPolicy(t)
	spoolDir := filepath.Join(t.TempDir(), "spool")
	sp, _, err := spool.Open(spoolDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var calls atomic.Int64
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.WriteString(w, `{"orders":[]}`)
	})
	spooling, err := n.Guard(t.Context(), node.GuardConfig{Policy: policy, Audience: "orders", Spool: sp}, upstream)
	if err != nil {
		t.Fatal(err)
	}
	failClosed, err := n.Guard(t.Context(), node.GuardConfig{Policy: policy, Audience: "orders"}, upstream)
	if err != nil {
		t.Fatal(err)
	}
	get := func(h http.Handler, i int) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", fmt.Sprintf("/customers/acc_%d/orders", i), nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set(guard.PurposeHeader, "support")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for i := range 3 {
		if w := get(spooling, i); w.Code != 200 {
			t.Fatalf("read %d with the log up: %d %s", i, w.Code, w.Body)
		}
	}
	if sp.Pending() {
		t.Fatal("reads spooled while the log was up")
	}

	n.Log.Close() // the log is down
	if w := get(failClosed, 99); w.Code != 503 || strings.Contains(w.Body.String(), "orders") {
		t.Fatalf("without a spool, with the log down: %d %s", w.Code, w.Body)
	}
	const down = 40
	var wg sync.WaitGroup
	for i := range down {
		wg.Go(func() {
			if w := get(spooling, 100+i); w.Code != 200 {
				t.Errorf("read with the log down: %d %s", w.Code, w.Body)
			}
		})
	}
	wg.Wait()
	if st := sp.Status(); st.Events != down {
		t.Fatalf("spool holds %d events, want %d", st.Events, down)
	}
	if c := calls.Load(); c != 3+1+down {
		t.Fatalf("upstream called %d times", c)
	}

	// The guard restarts on the data directory, and drains.
	n2, err := node.Open(t.Context(), node.Config{DataDir: n.Config().DataDir, Addr: n.Config().Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if moved, err := n2.DrainSpool(t.Context(), sp); err != nil || moved != down {
		t.Fatalf("drain: moved %d, %v", moved, err)
	}
	if moved, err := n2.DrainSpool(t.Context(), sp); err != nil || moved != 0 {
		t.Fatalf("second drain: moved %d, %v", moved, err)
	}
	reads := map[string]int{}
	drained := int64(0)
	err = n2.Audit.Query(t.Context(), audit.Filter{}, func(r audit.Record) error {
		switch r.Event.Type {
		case audit.EventDataRead:
			reads[r.Event.Subject]++
		case node.EventSpoolDrained:
			drained += r.Event.Fields["events"].(int64)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(reads) != 3+down || drained != down {
		t.Fatalf("log holds reads of %d subjects and %d drained, want %d and %d", len(reads), drained, 3+down, down)
	}
	for s, c := range reads {
		if c != 1 {
			t.Errorf("read of %s recorded %d times", s, c)
		}
	}
	if _, ok := reads["acc_99"]; ok {
		t.Error("the refused read is recorded as a read")
	}
}

// A forged token raises forged_token, whose response blocks the forger's
// IP: the guard then refuses that IP even a token custos issued, while
// other IPs go on; an operator lifts the block.
func TestForgedTokenBlocksItsIP(t *testing.T) {
	n, base := startNode(t, nil)
	_, forge := stolenKey(t, n, base)
	_, token := service(t, n, base)
	tok := token()
	policy := ordersPolicy(t)
	h, err := n.Guard(t.Context(), node.GuardConfig{Policy: policy, Audience: "orders"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"orders":[]}`)
	}))
	if err != nil {
		t.Fatal(err)
	}
	get := func(ip, tok string) (int, string) {
		r := httptest.NewRequest("GET", "/customers/acc_1/orders", nil)
		r.RemoteAddr = ip + ":5555"
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set(guard.PurposeHeader, "support")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	if code, _ := get("203.0.113.66", tok); code != 200 {
		t.Fatalf("before: %d", code)
	}
	if code, _ := get("203.0.113.66", forge("orders-svc")); code != 401 {
		t.Fatalf("forged: %d", code)
	}
	d, err := n.Detector(t.Context(), detect.DefaultRules(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for {
		k, err := d.Step(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			break
		}
	}
	if code, body := get("203.0.113.66", tok); code != 403 || !strings.Contains(body, "ip_blocked") {
		t.Fatalf("a token custos issued, from the forger's IP: %d %s", code, body)
	}
	if code, _ := get("203.0.113.67", tok); code != 200 {
		t.Fatalf("another IP: %d", code)
	}
	if err := n.UnblockIP(t.Context(), "203.0.113.66", "test", "false positive: our NAT"); err != nil {
		t.Fatal(err)
	}
	if code, _ := get("203.0.113.66", tok); code != 200 {
		t.Fatalf("after lifting the block: %d", code)
	}
	var kinds []string
	n.Audit.Query(t.Context(), audit.Filter{Types: []string{detect.EventAlertResponse, node.EventIPUnblocked}}, func(r audit.Record) error {
		kinds = append(kinds, r.Event.Type+" "+r.Event.IP)
		return nil
	})
	if strings.Join(kinds, ",") != "alert_response 203.0.113.66,ip_unblocked 203.0.113.66" {
		t.Errorf("recorded %q", kinds)
	}
}
