package node_test

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/event"
)

// The 2025 case through the guard: a token custos issued reads a
// customer's orders, and its read is in the audit log; a token minted with
// a real signing key but never issued is refused as forged, recorded, and
// never reaches the service.
func TestGuardInFrontOfAService(t *testing.T) {
	n, base := startNode(t, nil)
	ctx := t.Context()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	info, err := n.Custody.Import(ctx, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), "test")
	if err != nil {
		t.Fatal(err)
	}
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
	h, err := n.Guard(policy, "orders", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
		req.Header.Set(guard.PurposeHeader, "order support")
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
	now := time.Now()
	hdr, _ := json.Marshal(map[string]string{"alg": "EdDSA", "typ": "at+jwt", "kid": info.ID})
	claims, _ := json.Marshal(map[string]any{
		"iss": base, "sub": "orders-svc", "aud": "orders", "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
		"jti": rand.Text(), "client_id": "orders-svc", "scope": "orders:read",
	})
	in := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(claims)
	sig, _ := key.Sign(rand.Reader, []byte(in), crypto.Hash(0))
	if status, body := get(in + "." + base64.RawURLEncoding.EncodeToString(sig)); status != 401 || !strings.Contains(body, "forged_token") || strings.Contains(body, "Seoul") {
		t.Fatalf("forged token: %d %s", status, body)
	}
	if calls.Load() != 1 {
		t.Fatalf("the service was called %d times, want once", calls.Load())
	}
	var got []string
	err = n.Audit.Query(ctx, audit.Filter{Classes: []event.Class{event.ClassAccess}}, func(r audit.Record) error {
		got = append(got, r.Event.Type+" "+r.Event.Actor+" "+r.Event.Subject+" "+fmtReason(r.Event))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"data_read orders-svc acc_victim -", "access_refused  acc_victim forged_token"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("access events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func fmtReason(e event.Event) string {
	if r, ok := e.Fields["reason"].(string); ok {
		return r
	}
	return "-"
}
