package audit_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/verify"
)

func accessEvents(t *testing.T, e *env) []event.Event {
	t.Helper()
	var out []event.Event
	err := e.al.Query(t.Context(), audit.Filter{Classes: []event.Class{event.ClassAccess}}, func(r audit.Record) error {
		out = append(out, r.Event)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRecordAccess(t *testing.T) {
	e := newEnv(t)
	at := time.Date(2026, 3, 2, 8, 15, 42, 0, time.UTC)
	read := guard.Access{
		Time: at, Outcome: guard.Forwarded, Mode: guard.Enforce, Route: "GET /customers/{id}/addresses",
		Method: "GET", Path: "/customers/acc_lee/addresses", JTI: "jti_1", Subject: "op_park", ClientID: "console",
		KeyID: "kid_1", DataSubject: "acc_lee", Data: []guard.Category{"address", "entrance_code"},
		Purpose: "support: ticket 4411", Status: 200, Size: 512, ClientIP: "203.0.113.7", UserAgent: "support-tool/2",
	}
	probe := guard.Access{
		Time: at, Outcome: guard.Refused, Reason: guard.ReasonNoRoute, Method: "GET",
		Path: "/admin/" + strings.Repeat("a", 400) + "\xff", Status: 404, ClientIP: "198.51.100.9",
	}
	summary := guard.Access{
		Time: at, Outcome: guard.Refused, Reason: guard.ReasonNoToken, Mode: guard.Enforce,
		Status: 401, ClientIP: "198.51.100.9", Count: 4812, Window: 10 * time.Second,
	}
	forged := guard.Access{
		Time: at, Outcome: guard.Refused, Reason: verify.ReasonForged, Mode: guard.Enforce, Route: "GET /me/profile",
		Method: "GET", JTI: "jti_made_up", Subject: "acc_lee", KeyID: "kid_legacy", IssuedAt: at.Add(-30 * 24 * time.Hour),
		Status: 401, ClientIP: "203.0.113.66",
	}
	for _, a := range []guard.Access{read, probe, summary, forged} {
		if err := e.al.Record(t.Context(), a); err != nil {
			t.Fatal(err)
		}
	}
	evs := accessEvents(t, e)
	if len(evs) != 4 {
		t.Fatalf("%d access events, want 4", len(evs))
	}
	if f := evs[3]; f.Fields["iat"] != forged.IssuedAt.Unix() || f.Fields["kid"] != "kid_legacy" {
		t.Fatalf("a forged token's refusal recorded as %+v", f)
	}
	if s := evs[2]; s.Type != audit.EventAccessRefused || s.IP != "198.51.100.9" || fmt.Sprint(s.Fields) != fmt.Sprint(map[string]any{
		"count": int64(4812), "mode": "enforce", "reason": "no_token", "status": int64(401), "window_ms": int64(10000),
	}) {
		t.Fatalf("summary of refusals recorded as %+v", s)
	}
	r := evs[0]
	want := map[string]any{
		"method": "GET", "mode": "enforce", "status": int64(200), "route": "GET /customers/{id}/addresses",
		"jti": "jti_1", "kid": "kid_1", "purpose": "support: ticket 4411", "user_agent": "support-tool/2",
		"data": "address entrance_code", "size": int64(512),
	}
	if r.Type != audit.EventDataRead || r.Actor != "op_park" || r.Subject != "acc_lee" || r.Client != "console" ||
		r.IP != "203.0.113.7" || !r.Time.Equal(at) || fmt.Sprint(r.Fields) != fmt.Sprint(want) {
		t.Fatalf("data_read event %+v", r)
	}
	if _, ok := r.Fields["path"]; ok {
		t.Fatal("a matched request's path is recorded; only its route should be")
	}
	p := evs[1]
	if p.Type != audit.EventAccessRefused || p.Fields["reason"] != "no_route" || p.Fields["route"] != nil || p.Fields["size"] != nil {
		t.Fatalf("access_refused event %+v", p)
	}
	if _, ok := p.Fields["path"]; ok || p.Fields["path_head"] != "/admin" || p.Fields["path_bytes"] != int64(len(probe.Path)) {
		t.Fatalf("probe path recorded as %v", p.Fields)
	}
	if h, _ := p.Fields["path_sha256"].(string); len(h) != 16 {
		t.Fatalf("probe path digest %q", h)
	}
}

// Through the guard, every response released has its data_read event in
// the log, count for count, and every refusal its access_refused event.
func TestGuardOverAuditLog(t *testing.T) {
	e := newEnv(t)
	p, err := guard.ParsePolicy("p", strings.NewReader("custos-guard-policy v1\nroute GET /me/profile\n subject token\n data name email\n"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := guard.New(guard.Config{Policy: p, Recorder: e.al, Verifier: verifierFunc(func(token string) (*verify.Claims, error) {
		if strings.HasPrefix(token, "acc_") {
			return &verify.Claims{Subject: token, ClientID: "shop", JTI: "j_" + token, SessionID: "s_" + token}, nil
		}
		return nil, &verify.Error{Reason: verify.ReasonForged}
	})})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"name":"Kim"}`)
	})))
	defer srv.Close()
	var mu sync.Mutex
	released := map[string]int{}
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			token := fmt.Sprintf("acc_%d", i%20)
			if i%3 == 0 {
				token = "forged"
			}
			req, _ := http.NewRequest("GET", srv.URL+"/me/profile", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode == 200 {
				mu.Lock()
				released[token]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	logged := map[string]int{}
	refused := 0
	for _, ev := range accessEvents(t, e) {
		switch ev.Type {
		case audit.EventDataRead:
			logged[ev.Subject]++
		case audit.EventAccessRefused:
			refused++
		}
	}
	if fmt.Sprint(logged) != fmt.Sprint(released) || refused != 20 {
		t.Fatalf("released %v, logged %v, %d refusals logged (want 20)", released, logged, refused)
	}
}

type verifierFunc func(token string) (*verify.Claims, error)

func (f verifierFunc) Verify(_ context.Context, token string) (*verify.Claims, error) {
	return f(token)
}
