package guard_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/verify"
)

// An IP that sends requests without a valid token past its budget has the
// rest counted, and recorded as one summary per reason when the window
// ends; a forged token, or a token custos issued, is always recorded whole;
// another IP has its own budget.
func TestRefusalBudget(t *testing.T) {
	p, err := guard.ParsePolicy("test.policy", strings.NewReader(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	const window = 300 * time.Millisecond
	g, err := guard.New(guard.Config{
		Policy: p, Recorder: rec, RefusalsPerIP: 3, RefusalWindow: window, Logger: slogDiscard(),
		Verifier: tokens{"forged": verify.ReasonForged, "lee": claims("acc_lee", "shop", "profile")},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) }))
	send := func(ip, path, token string) int {
		r := httptest.NewRequest("GET", path, nil)
		r.RemoteAddr = ip + ":1234"
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	start := time.Now()
	for i := range 10 {
		if code := send("192.0.2.1", "/me/profile", ""); code != 401 {
			t.Fatalf("request %d without a token: %d", i, code)
		}
	}
	for range 5 {
		send("192.0.2.1", "/nothing/here", "")
	}
	for range 4 {
		if code := send("192.0.2.1", "/me/profile", "forged"); code != 401 {
			t.Fatalf("forged token: %d", code)
		}
	}
	for range 2 {
		if code := send("192.0.2.1", "/customers/acc_kim/addresses", "lee"); code != 403 {
			t.Fatalf("another's data: %d", code)
		}
	}
	send("192.0.2.2", "/me/profile", "")
	if time.Since(start) >= window {
		t.Skip("the machine is too slow for this window")
	}
	counts := func() (whole map[string]int, summaries map[string]int) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		whole, summaries = map[string]int{}, map[string]int{}
		for _, a := range rec.all {
			key := a.ClientIP + " " + string(a.Reason)
			if a.Count > 0 {
				summaries[key] += a.Count
				if a.Route != "" || a.Path != "" || a.JTI != "" || a.Window != window || a.Status == 0 {
					t.Errorf("summary names more than its IP and reason: %+v", a)
				}
			} else {
				whole[key]++
			}
		}
		return whole, summaries
	}
	whole, summaries := counts()
	want := map[string]int{
		"192.0.2.1 no_token":         3, // the budget
		"192.0.2.1 forged_token":     4, // always whole
		"192.0.2.1 subject_mismatch": 2, // a verified token: always whole
		"192.0.2.2 no_token":         1, // its own budget
	}
	if !equal(whole, want) || len(summaries) != 0 {
		t.Fatalf("before the window ends: whole %v, summaries %v; want %v and none", whole, summaries, want)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, summaries = counts(); summaries["192.0.2.1 no_token"]+summaries["192.0.2.1 no_route"] == 12 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if want := map[string]int{"192.0.2.1 no_token": 7, "192.0.2.1 no_route": 5}; !equal(summaries, want) {
		t.Fatalf("summaries %v, want %v", summaries, want)
	}
	// A new window: the budget again.
	if code := send("192.0.2.1", "/me/profile", ""); code != 401 {
		t.Fatal(code)
	}
	if whole, _ := counts(); whole["192.0.2.1 no_token"] != 4 {
		t.Fatalf("in the next window: %v", whole)
	}
}

func equal(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A blocked IP's request is refused if its token verifies; a token that
// fails is refused for its own reason, which says more.
func TestBlockedIP(t *testing.T) {
	p, err := guard.ParsePolicy("test.policy", strings.NewReader(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	g, err := guard.New(guard.Config{
		Policy: p, Recorder: rec, Logger: slogDiscard(),
		Verifier: tokens{"forged": verify.ReasonForged, "kim": claims("acc_kim", "shop", "profile")},
		Blocked:  func(ip string, _ time.Time) bool { return ip == "192.0.2.66" },
	})
	if err != nil {
		t.Fatal(err)
	}
	h := g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) }))
	for _, tc := range []struct {
		ip, token string
		status    int
		reason    verify.Reason
	}{
		{"192.0.2.66", "kim", 403, guard.ReasonIPBlocked},
		{"192.0.2.66", "forged", 401, verify.ReasonForged},
		{"192.0.2.67", "kim", 200, ""},
	} {
		r := httptest.NewRequest("GET", "/me/profile", nil)
		r.RemoteAddr = tc.ip + ":1234"
		r.Header.Set("Authorization", "Bearer "+tc.token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if a := rec.last(t); w.Code != tc.status || a.Reason != tc.reason {
			t.Errorf("%s with %s: %d, recorded %q; want %d %q", tc.ip, tc.token, w.Code, a.Reason, tc.status, tc.reason)
		}
	}
}
