package guard_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/verify"
)

// tokens is a fake verifier: each token stands for claims or a refusal.
type tokens map[string]any

func (t tokens) Verify(_ context.Context, token string) (*verify.Claims, error) {
	switch v := t[token].(type) {
	case *verify.Claims:
		return v, nil
	case verify.Reason:
		return nil, &verify.Error{Reason: v}
	case error:
		return nil, v
	}
	return nil, &verify.Error{Reason: verify.ReasonMalformed}
}

// recorder keeps access events; with fail set, it refuses them.
type recorder struct {
	mu   sync.Mutex
	all  []guard.Access
	fail atomic.Bool
}

func (r *recorder) Record(_ context.Context, a guard.Access) error {
	if r.fail.Load() {
		return errors.New("audit log stopped")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, a)
	return nil
}

func (r *recorder) last(t *testing.T) guard.Access {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.all) == 0 {
		t.Fatal("nothing recorded")
	}
	return r.all[len(r.all)-1]
}

const testPolicy = `custos-guard-policy v1
route GET /me/profile
    subject token
    scope profile
    data name email phone
route GET /customers/{id}/addresses
    subject path id
    staff-scope customers:read
    data address entrance_code
route GET /customers/{id}/orders
    subject path id
    data order_history
    rate 2/m per subject
route GET /customers/{id}/payment
    subject path id
    staff-scope customers:read
    purpose fraud_review chargeback
    data payment_method
route GET /monitored/{id}
    subject path id
    data name
    mode monitor
route GET /big
    subject token
    data name
`

// claims are a signed-in user's token claims (with a session).
func claims(sub, client string, scopes ...string) *verify.Claims {
	return &verify.Claims{Subject: sub, ClientID: client, JTI: "jti-" + sub + "-" + client, KeyID: "kid-1", Scope: scopes, SessionID: "sid-" + sub}
}

type env struct {
	srv      *httptest.Server
	h        http.Handler // the guard in front of the upstream, as srv serves it
	rec      *recorder
	upstream atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	p, err := guard.ParsePolicy("test.policy", strings.NewReader(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{rec: &recorder{}}
	g, err := guard.New(guard.Config{
		Policy: p, Recorder: e.rec, MaxResponseBytes: 1 << 10,
		Verifier: tokens{
			"kim":         claims("acc_kim", "shop", "profile"),
			"kim-noscope": claims("acc_kim", "shop"),
			"lee":         claims("acc_lee", "shop", "profile"),
			"support":     claims("op_park", "console", "customers:read"),
			// A service's client-credentials token: its subject is its
			// client id, and it has no session.
			"service": &verify.Claims{Subject: "acc_kim", ClientID: "acc_kim", JTI: "jti-svc", KeyID: "kid-1", Scope: []string{"profile"}},
			"forged":  verify.ReasonForged,
			// Signed with a custos key, never issued: verify says whom
			// it claims to be.
			"forged-victim": &verify.Error{Reason: verify.ReasonForged, Claims: claims("acc_victim", "shop", "profile")},
			"revoked-key":   verify.ReasonRevokedKey,
			"id-token":      verify.ReasonType,
			"other-aud":     verify.ReasonAudience,
			"unavailable":   &verify.Error{Reason: verify.ReasonUnavailable, Err: errors.New("JWKS unreachable")},
			"broken-error":  errors.New("not a verify error"),
		},
		Logger: slogDiscard(),
	})
	if err != nil {
		t.Fatal(err)
	}
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.upstream.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/big" {
			w.Write([]byte(strings.Repeat("x", 2<<10)))
			return
		}
		fmt.Fprintf(w, `{"path":%q,"secret":"personal data"}`, r.URL.Path)
	})
	e.h = g.Wrap(upstream)
	e.srv = httptest.NewServer(e.h)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) get(t *testing.T, path, token, purpose string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if purpose != "" {
		req.Header.Set(guard.PurposeHeader, purpose)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestGuard(t *testing.T) {
	tests := []struct {
		name, path, token, purpose string
		status                     int
		outcome                    guard.Outcome
		reason                     verify.Reason
		dataSubject                string
	}{
		{"own profile", "/me/profile", "kim", "", 200, guard.Forwarded, "", "acc_kim"},
		{"own profile without its scope", "/me/profile", "kim-noscope", "", 403, guard.Refused, guard.ReasonMissingScope, "acc_kim"},
		{"no token", "/me/profile", "", "", 401, guard.Refused, guard.ReasonNoToken, ""},
		{"forged token", "/me/profile", "forged", "", 401, guard.Refused, verify.ReasonForged, ""},
		{"forged token naming its victim", "/me/profile", "forged-victim", "", 401, guard.Refused, verify.ReasonForged, "acc_victim"},
		{"revoked key", "/me/profile", "revoked-key", "", 401, guard.Refused, verify.ReasonRevokedKey, ""},
		{"ID token as access token", "/me/profile", "id-token", "", 401, guard.Refused, verify.ReasonType, ""},
		{"another audience", "/me/profile", "other-aud", "", 401, guard.Refused, verify.ReasonAudience, ""},
		{"keys unavailable", "/me/profile", "unavailable", "", 503, guard.Refused, verify.ReasonUnavailable, ""},
		{"not a verify error", "/me/profile", "broken-error", "", 503, guard.Refused, verify.ReasonUnavailable, ""},
		{"a service token is no customer", "/me/profile", "service", "", 403, guard.Refused, guard.ReasonSubjectMismatch, "acc_kim"},
		{"a service named like a customer", "/customers/acc_kim/addresses", "service", "", 403, guard.Refused, guard.ReasonSubjectMismatch, "acc_kim"},
		{"customer reads another's addresses", "/customers/acc_lee/addresses", "kim", "", 403, guard.Refused, guard.ReasonSubjectMismatch, "acc_lee"},
		{"customer reads own addresses", "/customers/acc_kim/addresses", "kim", "", 200, guard.Forwarded, "", "acc_kim"},
		{"staff with purpose", "/customers/acc_lee/addresses", "support", "support", 200, guard.Forwarded, "", "acc_lee"},
		{"staff with purpose and reference", "/customers/acc_lee/addresses", "support", "support: ticket 4411", 200, guard.Forwarded, "", "acc_lee"},
		{"staff without purpose", "/customers/acc_lee/addresses", "support", "", 403, guard.Refused, guard.ReasonMissingPurpose, "acc_lee"},
		{"staff with a free-text purpose", "/customers/acc_lee/addresses", "support", "ticket 4411", 400, guard.Refused, guard.ReasonBadPurpose, "acc_lee"},
		{"staff with a capitalised code", "/customers/acc_lee/addresses", "support", "Support: ticket 4411", 400, guard.Refused, guard.ReasonBadPurpose, "acc_lee"},
		{"purpose with a tab", "/customers/acc_lee/addresses", "support", "support: ticket\t4411", 400, guard.Refused, guard.ReasonBadPurpose, "acc_lee"},
		{"purpose not UTF-8", "/customers/acc_lee/addresses", "support", "support: ticket \xff", 400, guard.Refused, guard.ReasonBadPurpose, "acc_lee"},
		{"purpose of 200 bytes", "/customers/acc_lee/addresses", "support", "support: " + strings.Repeat("x", 191), 200, guard.Forwarded, "", "acc_lee"},
		{"purpose of 201 bytes", "/customers/acc_lee/addresses", "support", "support: " + strings.Repeat("x", 192), 400, guard.Refused, guard.ReasonBadPurpose, "acc_lee"},
		{"customer's own data with a bad purpose", "/me/profile", "kim", "ticket 4411", 400, guard.Refused, guard.ReasonBadPurpose, "acc_kim"},
		{"a forged token is refused as forged, whatever purpose it sends", "/me/profile", "forged", "ticket 4411", 401, guard.Refused, verify.ReasonForged, ""},
		{"monitored: bad purpose refused", "/monitored/acc_lee", "kim", "ticket 4411", 400, guard.Refused, guard.ReasonBadPurpose, "acc_lee"},
		{"staff with a listed purpose", "/customers/acc_lee/payment", "support", "fraud_review: case 7", 200, guard.Forwarded, "", "acc_lee"},
		{"staff with another purpose", "/customers/acc_lee/payment", "support", "support: ticket 4411", 403, guard.Refused, guard.ReasonPurposeNotAllowed, "acc_lee"},
		{"staff without purpose where purposes are listed", "/customers/acc_lee/payment", "support", "", 403, guard.Refused, guard.ReasonMissingPurpose, "acc_lee"},
		{"listed purposes bind only staff", "/customers/acc_kim/payment", "kim", "support", 200, guard.Forwarded, "", "acc_kim"},
		{"staff on a customers-only route", "/customers/acc_lee/orders", "support", "support: ticket 4411", 403, guard.Refused, guard.ReasonSubjectMismatch, "acc_lee"},
		{"no route", "/admin/export", "kim", "", 404, guard.Refused, guard.ReasonNoRoute, ""},
		{"monitored: another's data", "/monitored/acc_lee", "kim", "", 200, guard.Monitored, guard.ReasonSubjectMismatch, "acc_lee"},
		{"monitored: forged token", "/monitored/acc_lee", "forged", "", 200, guard.Monitored, verify.ReasonForged, "acc_lee"},
		{"response over the bound", "/big", "kim", "", 502, guard.Refused, guard.ReasonResponseTooLarge, "acc_kim"},
	}
	e := newEnv(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.upstream.Load()
			status, body := e.get(t, tc.path, tc.token, tc.purpose)
			if status != tc.status {
				t.Fatalf("status %d, want %d (body %s)", status, tc.status, body)
			}
			a := e.rec.last(t)
			if a.Outcome != tc.outcome || a.Reason != tc.reason || a.DataSubject != tc.dataSubject {
				t.Fatalf("recorded %s/%s for %q; want %s/%s for %q", a.Outcome, a.Reason, a.DataSubject, tc.outcome, tc.reason, tc.dataSubject)
			}
			forwarded := e.upstream.Load() > before
			released := strings.Contains(body, "personal data")
			switch tc.outcome {
			case guard.Refused:
				if tc.reason != guard.ReasonResponseTooLarge && forwarded {
					t.Fatal("the upstream saw a refused request")
				}
				if released || !strings.Contains(body, string(tc.reason)) {
					t.Fatalf("refusal body %q", body)
				}
			default:
				if !forwarded || (tc.path != "/big" && !released) {
					t.Fatalf("not forwarded (%v) or not released: %q", forwarded, body)
				}
				if a.Status != status || a.Size != int64(len(body)) {
					t.Fatalf("recorded status %d size %d; released %d, %d bytes", a.Status, a.Size, status, len(body))
				}
			}
			if tc.purpose != "" && a.Purpose != tc.purpose && tc.outcome != guard.Refused {
				t.Fatalf("purpose %q recorded as %q", tc.purpose, a.Purpose)
			}
			// A malformed purpose is refused whatever the route's mode,
			// and not recorded.
			if tc.reason == guard.ReasonBadPurpose && (a.Mode != guard.Enforce || a.Purpose != "") {
				t.Fatalf("bad purpose recorded in mode %v with purpose %q", a.Mode, a.Purpose)
			}
		})
	}
}

func TestGuardRecordsTokenAndRequest(t *testing.T) {
	e := newEnv(t)
	e.get(t, "/customers/acc_lee/addresses", "support", "support: ticket 4411")
	a := e.rec.last(t)
	want := guard.Access{
		Outcome: guard.Forwarded, Mode: guard.Enforce, Route: "GET /customers/{id}/addresses", Method: "GET",
		Path: "/customers/acc_lee/addresses", JTI: "jti-op_park-console", Subject: "op_park", ClientID: "console",
		KeyID: "kid-1", SessionID: "sid-op_park", DataSubject: "acc_lee", Data: []guard.Category{"address", "entrance_code"},
		Purpose: "support: ticket 4411", Status: 200, ClientIP: "127.0.0.1", UserAgent: "Go-http-client/1.1",
	}
	a.Time, a.Size = time.Time{}, 0
	if fmt.Sprint(a) != fmt.Sprint(want) {
		t.Fatalf("recorded\n%+v\nwant\n%+v", a, want)
	}
}

// With the audit log stopped, no personal data leaves: fail closed.
func TestGuardFailsClosed(t *testing.T) {
	e := newEnv(t)
	e.rec.fail.Store(true)
	status, body := e.get(t, "/me/profile", "kim", "")
	if status != 503 || strings.Contains(body, "personal data") || !strings.Contains(body, string(guard.ReasonLogUnavailable)) {
		t.Fatalf("with the log stopped: %d %q", status, body)
	}
	// A refusal is still refused.
	if status, _ := e.get(t, "/me/profile", "forged", ""); status != 401 {
		t.Fatalf("forged token with the log stopped: %d", status)
	}
}

func TestGuardRateLimit(t *testing.T) {
	e := newEnv(t)
	for i, want := range []int{200, 200, 429} {
		if status, _ := e.get(t, "/customers/acc_kim/orders", "kim", ""); status != want {
			t.Fatalf("request %d: %d, want %d", i+1, status, want)
		}
	}
	if a := e.rec.last(t); a.Reason != guard.ReasonRateLimited {
		t.Fatalf("recorded %s", a.Reason)
	}
	// Counted per subject: another customer is not limited.
	if status, _ := e.get(t, "/customers/acc_lee/orders", "lee", ""); status != 200 {
		t.Fatalf("another subject: %d, want 200", status)
	}
}

// A method the policy does not name for a path matches no route.
func TestGuardMethodNotNamed(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest("POST", e.srv.URL+"/me/profile", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer kim")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || e.upstream.Load() != 0 || e.rec.last(t).Reason != guard.ReasonNoRoute {
		t.Fatalf("POST to a GET route: %d, upstream called %d times, recorded %s", resp.StatusCode, e.upstream.Load(), e.rec.last(t).Reason)
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// A declared purpose is CODE or CODE: REFERENCE, sent once; anything else
// is refused before the upstream sees it. These are handed to the guard
// directly: an HTTP client or server refuses most control characters.
func TestGuardPurposeHeader(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		status int
	}{
		{"code", []string{"fraud_review"}, 200},
		{"code with - and digits", []string{"0-day"}, 200},
		{"code of 64", []string{strings.Repeat("a", 64)}, 200},
		{"reference", []string{"support: ticket 4411"}, 200},
		{"reference with a colon", []string{"support: case: 7"}, 200},
		{"reference in Korean", []string{"support: 배송 문의 311"}, 200},
		{"spaces around the reference", []string{"support:   ticket 4411  "}, 200},
		{"reference without a space", []string{"support:4411"}, 200},
		{"empty", []string{""}, 400},
		{"two headers", []string{"support", "support"}, 400},
		{"code of 65", []string{strings.Repeat("a", 65)}, 400},
		{"code starting with _", []string{"_support"}, 400},
		{"space in the code", []string{"order support"}, 400},
		{"space before the colon", []string{"support : ticket 4411"}, 400},
		{"colon without a reference", []string{"support:  "}, 400},
		{"no code", []string{": ticket 4411"}, 400},
		{"NUL", []string{"support: ticket\x004411"}, 400},
		{"newline", []string{"support: ticket\n4411"}, 400},
		{"escape sequence", []string{"support: \x1b[2Jticket"}, 400},
		{"DEL", []string{"support: ticket\x7f"}, 400},
		{"C1 control", []string{"support: ticket\u00854411"}, 400},
		{"bidi override", []string{"support: \u202e1144 tekcit"}, 400},
		{"invalid UTF-8", []string{"support: \xc3\x28"}, 400},
		{"201 bytes", []string{"support: " + strings.Repeat("가", 64)}, 400},
	}
	e := newEnv(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.upstream.Load()
			r := httptest.NewRequest("GET", "/customers/acc_lee/addresses", nil)
			r.Header.Set("Authorization", "Bearer support")
			r.Header[guard.PurposeHeader] = tc.values
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, r)
			a := e.rec.last(t)
			switch {
			case w.Code != tc.status:
				t.Fatalf("status %d, want %d (body %s)", w.Code, tc.status, w.Body)
			case tc.status == 200 && (a.Outcome != guard.Forwarded || a.Purpose != tc.values[0]):
				t.Fatalf("recorded %s with purpose %q; want forwarded with %q", a.Outcome, a.Purpose, tc.values[0])
			case tc.status != 200 && (a.Outcome != guard.Refused || a.Reason != guard.ReasonBadPurpose || a.Purpose != "" || e.upstream.Load() != before):
				t.Fatalf("recorded %s/%s with purpose %q, upstream called %d times; want refused for bad_purpose, unrecorded, not called",
					a.Outcome, a.Reason, a.Purpose, e.upstream.Load()-before)
			case tc.status != 200 && !strings.Contains(w.Body.String(), string(guard.ReasonBadPurpose)):
				t.Fatalf("refusal body %q", w.Body)
			}
		})
	}
}

// Every 2xx that left the guard has its access event, count for count,
// under concurrent load.
func TestGuardReconciles(t *testing.T) {
	e := newEnv(t)
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			token := []string{"kim", "lee", "forged", "kim-noscope"}[i%4]
			if status, _ := e.get(t, "/me/profile", token, ""); status == 200 {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	var forwarded, refused int64
	for _, a := range e.rec.all {
		switch a.Outcome {
		case guard.Forwarded:
			forwarded++
		case guard.Refused:
			refused++
		}
	}
	if ok.Load() != 100 || forwarded != ok.Load() || e.upstream.Load() != forwarded || refused != 100 {
		t.Fatalf("%d responses released, %d forwards recorded, %d upstream calls, %d refusals; want 100 each", ok.Load(), forwarded, e.upstream.Load(), refused)
	}
}

// The upstream learns whom the verified token names from the guard, never
// from what the client sent.
func TestGuardIdentityHeaders(t *testing.T) {
	p, err := guard.ParsePolicy("p", strings.NewReader("custos-guard-policy v1\nroute GET /customers/{id}/addresses\n subject path id\n staff-scope customers:read\n data address\n"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := guard.New(guard.Config{Policy: p, Recorder: &recorder{}, Verifier: tokens{"support": claims("op_park", "console", "customers:read")}})
	if err != nil {
		t.Fatal(err)
	}
	var seen http.Header
	h := g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.Header.Clone() }))
	r := httptest.NewRequest("GET", "/customers/acc_lee/addresses", nil)
	r.Header.Set("Authorization", "Bearer support")
	r.Header.Set(guard.PurposeHeader, "support: ticket 4411")
	r.Header.Set(guard.SubjectHeader, "acc_lee")     // a lie
	r.Header.Set("Custos-Role", "admin")             // not the guard's
	r.Header.Set(guard.DataSubjectHeader, "acc_kim") // another lie
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	want := map[string]string{
		guard.SubjectHeader: "op_park", guard.ClientHeader: "console", guard.DataSubjectHeader: "acc_lee",
		guard.PurposeHeader: "support: ticket 4411", "Custos-Role": "",
	}
	for k, v := range want {
		if got := seen.Get(k); got != v {
			t.Errorf("upstream saw %s: %q, want %q", k, got, v)
		}
	}
	if r.Header.Get(guard.SubjectHeader) != "acc_lee" {
		t.Error("the guard changed the caller's request")
	}
}

// A forged token on a monitor route gets through, as monitor means, and
// its record says whom it claimed to be and whose data left; the upstream
// is told the claimed subject. On an enforce route the same token is
// refused, and recorded with the same identity.
func TestForgedTokenIdentityIsRecorded(t *testing.T) {
	p, err := guard.ParsePolicy("t.policy", strings.NewReader(`custos-guard-policy v1
route GET /me/profile
    subject token
    scope profile
    data name
    mode monitor
route GET /me/orders
    subject token
    scope profile
    data order_history
`))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	forged := &verify.Claims{Subject: "acc_victim", ClientID: "shop", JTI: "jti-made-up", KeyID: "kid-legacy", Scope: []string{"profile"}, SessionID: "sid-made-up",
		IssuedAt: time.Unix(1_700_000_000, 0)}
	g, err := guard.New(guard.Config{Policy: p, Recorder: rec, Logger: slogDiscard(),
		Verifier: tokens{"forged": &verify.Error{Reason: verify.ReasonForged, Claims: forged}}})
	if err != nil {
		t.Fatal(err)
	}
	var told string
	h := g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		told = r.Header.Get(guard.SubjectHeader) + " " + r.Header.Get(guard.DataSubjectHeader)
		w.Write([]byte(`{"name":"victim"}`))
	}))
	for _, tc := range []struct {
		path    string
		status  int
		outcome guard.Outcome
	}{{"/me/profile", 200, guard.Monitored}, {"/me/orders", 401, guard.Refused}} {
		told = ""
		r := httptest.NewRequest("GET", tc.path, nil)
		r.Header.Set("Authorization", "Bearer forged")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		a := rec.last(t)
		if w.Code != tc.status || a.Outcome != tc.outcome || a.Reason != verify.ReasonForged {
			t.Fatalf("%s: %d, recorded %s/%s", tc.path, w.Code, a.Outcome, a.Reason)
		}
		if a.Subject != "acc_victim" || a.DataSubject != "acc_victim" || a.JTI != "jti-made-up" || a.KeyID != "kid-legacy" || a.ClientID != "shop" ||
			!a.IssuedAt.Equal(forged.IssuedAt) {
			t.Errorf("%s: recorded %+v", tc.path, a)
		}
		if tc.outcome == guard.Monitored && told != "acc_victim acc_victim" {
			t.Errorf("monitor route: the upstream was told %q", told)
		}
		if tc.outcome == guard.Refused && told != "" {
			t.Errorf("enforce route: the upstream was called")
		}
	}
}
