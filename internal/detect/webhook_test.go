package detect_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/detect"
	"github.com/custos-dev/custos/internal/event"
)

// An alert raised with webhooks configured is delivered to each, signed;
// a webhook that fails is retried with backoff until it answers 2xx, and
// given up after a day; the URL never shows in what is stored.
func TestWebhookDelivery(t *testing.T) {
	e := newEnv(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	fail := 2 // the first two attempts at "soc" fail
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/soc" && fail > 0 {
			fail--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/gone" {
			w.WriteHeader(http.StatusGone)
			return
		}
		got, bodies = append(got, r), append(bodies, b)
	}))
	defer srv.Close()
	hook := func(name, path string) detect.Webhook {
		u, _ := url.Parse(srv.URL + path + "?token=in-the-url")
		return detect.Webhook{Name: name, URL: u, Secret: secret}
	}
	hooks := []detect.Webhook{hook("soc", "/soc"), hook("pager", "/pager"), hook("gone", "/gone")}
	d, err := detect.New(t.Context(), detect.Config{Rules: detect.DefaultRules(), Store: e.st, Encode: e.al.Encode, Webhooks: []string{"soc", "pager", "gone"}})
	if err != nil {
		t.Fatal(err)
	}
	e.emit(t, forged(1, "kid-legacy"))
	drain(t, d)

	clock := time.Now()
	dl := &detect.Deliverer{Store: e.st, Hooks: hooks, Now: func() time.Time { return clock }}
	if n, err := dl.DeliverDue(t.Context()); err != nil || n != 1 {
		t.Fatalf("first round: delivered %d, %v (pager only)", n, err)
	}
	if n, _ := dl.DeliverDue(t.Context()); n != 0 {
		t.Fatalf("a failed delivery was retried before its backoff: %d", n)
	}
	clock = clock.Add(2 * time.Second)
	dl.DeliverDue(t.Context()) // soc fails again
	clock = clock.Add(4 * time.Second)
	if n, err := dl.DeliverDue(t.Context()); err != nil || n != 1 {
		t.Fatalf("third attempt at soc: delivered %d, %v", n, err)
	}
	clock = clock.Add(25 * time.Hour)
	dl.DeliverDue(t.Context()) // gone: given up
	clock = clock.Add(time.Hour)
	if due, _ := e.st.DueDeliveries(t.Context(), clock.Add(48*time.Hour), 10); len(due) != 0 {
		t.Fatalf("deliveries still due after a day: %+v", due)
	}

	if len(got) != 2 {
		t.Fatalf("%d deliveries received, want 2", len(got))
	}
	for i, r := range got {
		var p struct {
			Type  string
			Alert struct{ ID, Rule, Severity string }
		}
		if err := json.Unmarshal(bodies[i], &p); err != nil || p.Type != "alert_raised" || p.Alert.Rule != "forged_token" || p.Alert.Severity != "critical" {
			t.Fatalf("payload %s: %v", bodies[i], err)
		}
		if r.Header.Get(detect.HeaderAlert) != p.Alert.ID || r.Header.Get(detect.HeaderDelivery) == "" {
			t.Errorf("headers %v", r.Header)
		}
		sig := r.Header.Get(detect.HeaderSignature)
		ts, _, _ := strings.Cut(strings.TrimPrefix(sig, "t="), ",")
		unix, _ := strconv.ParseInt(ts, 10, 64)
		if want := detect.Sign(secret, bodies[i], time.Unix(unix, 0)); sig != want {
			t.Errorf("signature %q, want %q", sig, want)
		}
		if detect.Sign([]byte("another secret, 32 bytes long!!!"), bodies[i], time.Unix(unix, 0)) == sig {
			t.Error("the signature does not depend on the secret")
		}
	}
	// Logs name webhooks, never their URLs (which may carry credentials).
	var logs strings.Builder
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	u, _ := url.Parse(closed.URL + "/hook?token=in-the-url")
	d2, err := detect.New(t.Context(), detect.Config{Name: "second", Rules: detect.DefaultRules(), Store: e.st, Encode: e.al.Encode, Webhooks: []string{"down"}})
	if err != nil {
		t.Fatal(err)
	}
	e.emit(t, event.Event{Class: event.ClassAudit, Type: "hold_release_requested", Fields: map[string]any{"hold_id": "h1"}})
	drain(t, d2)
	dl = &detect.Deliverer{Store: e.st, Hooks: []detect.Webhook{{Name: "down", URL: u, Secret: secret}}, Now: func() time.Time { return clock },
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	if n, _ := dl.DeliverDue(t.Context()); n != 0 || !strings.Contains(logs.String(), "webhook=down") {
		t.Fatalf("delivery to a closed port: %d delivered; log %s", n, logs.String())
	}
	if strings.Contains(logs.String(), "in-the-url") || strings.Contains(logs.String(), "/hook") {
		t.Errorf("the log holds the webhook's URL: %s", logs.String())
	}
}

func TestParseWebhookURL(t *testing.T) {
	for s, ok := range map[string]bool{
		"https://soc.example/hooks/custos": true,
		"http://127.0.0.1:9000/hook":       true,
		"http://[::1]:9000/hook":           true,
		"http://localhost/hook":            true,
		"http://soc.example/hook":          false,
		"ftp://soc.example/hook":           false,
		"https:///nohost":                  false,
		"https://soc.example/hook#frag":    false,
	} {
		if _, err := detect.ParseWebhookURL(s); (err == nil) != ok {
			t.Errorf("ParseWebhookURL(%q): %v", s, err)
		}
	}
}
