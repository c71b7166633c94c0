package ssf_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/keys"
	"github.com/custos-dev/custos/internal/ssf"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/store/sqlite"
)

type fixedKey struct{ sk *keys.SigningKey }

func (f fixedKey) Signer(context.Context) (*keys.SigningKey, error) { return f.sk, nil }

// Push keeps a stream's order: while the first token is not delivered the
// others wait, and its backoff is the stream's. A receiver's 400 for a
// token it can never take gives that token up; a 400 for its credentials
// or keys is retried.
func TestPushOrderAndRefusals(t *testing.T) {
	st, err := sqlite.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.InitLog(t.Context(), "example.com/log"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	answers := []func(w http.ResponseWriter){ // one per request, in turn
		func(w http.ResponseWriter) { w.WriteHeader(503) },
		func(w http.ResponseWriter) {
			w.WriteHeader(400)
			io.WriteString(w, `{"err":"invalid_key","description":"unknown kid"}`)
		},
		func(w http.ResponseWriter) { w.WriteHeader(202) },
		func(w http.ResponseWriter) {
			w.WriteHeader(400)
			io.WriteString(w, `{"err":"invalid_audience","description":"not us"}`)
		},
		func(w http.ResponseWriter) { w.WriteHeader(202) },
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		parts := strings.Split(string(b), ".")
		got = append(got, parts[1])
		answers[0](w)
		answers = answers[1:]
	}))
	defer srv.Close()
	if err := st.AddSSFStream(t.Context(), store.SSFStream{ID: "crm", Audience: "a", Delivery: "push", Endpoint: srv.URL, Events: []string{ssf.AccountDisabled}, CreatedAt: time.Now()}, []byte(`{"added":1}`)); err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	var toks []store.SSFToken
	for _, jti := range []string{"first", "second", "third"} {
		c, _ := json.Marshal(map[string]any{"jti": jti, "aud": "a"})
		toks = append(toks, store.SSFToken{StreamID: "crm", JTI: jti, Claims: c, CreatedAt: clock, NextAt: clock})
	}
	if err := st.SaveTransmission(t.Context(), store.SSFTransmission{State: store.DetectorState{Name: "ssf-transmitter", Next: 1}, Tokens: toks}); err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	p := &ssf.Pusher{Store: st, Keys: fixedKey{&keys.SigningKey{ID: "k1", Algorithm: "EdDSA", Signer: priv}}, Now: func() time.Time { return clock }}
	round := func() int {
		n, err := p.PushDue(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	jtis := func() []string {
		var out []string
		for _, g := range got {
			var c map[string]any
			b, _ := base64URL(g)
			json.Unmarshal(b, &c)
			out = append(out, c["jti"].(string))
		}
		return out
	}
	round() // first: 503
	round() // nothing: first waits out its backoff, and the others with it
	clock = clock.Add(3 * time.Second)
	round() // first: 400 invalid_key, retried
	clock = clock.Add(5 * time.Second)
	round() // first: delivered; second: 400 invalid_audience, given up; third: delivered
	if strings.Join(jtis(), " ") != "first first first second third" {
		t.Fatalf("pushed %q", jtis())
	}
	if pend, _ := st.PendingSSFTokens(t.Context(), "crm", time.Time{}, 10); len(pend) != 0 {
		t.Fatalf("still pending %+v", pend)
	}
}

func base64URL(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// The transmitter queues each event's token once per stream: across a
// restart, and with two transmitters on one store; a stream hears only
// what the log records after its addition.
func TestTransmitterExactlyOnce(t *testing.T) {
	st, err := sqlite.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.InitLog(t.Context(), "example.com/log"); err != nil {
		t.Fatal(err)
	}
	appendEvent := func(typ, subject string) {
		t.Helper()
		e := fmt.Sprintf(`{"v":1,"id":"%032x","time":"2026-11-23T09:00:00.000000Z","class":"admin","type":"%s","actor":"op","subject":"%s"}`, seq(), typ, subject)
		data, _ := auditlog.AppendEntryBundle(nil, []byte(e))
		if _, err := st.AppendChunk(t.Context(), 1, data); err != nil {
			t.Fatal(err)
		}
	}
	appendEvent("account_disabled", "acc_before") // before the stream: not sent
	if err := st.AddSSFStream(t.Context(), store.SSFStream{ID: "bank", Audience: "a", Delivery: "poll", PollHash: []byte("h"),
		Events: []string{ssf.AccountDisabled, ssf.CredentialChange}, CreatedAt: time.Now()}, []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		appendEvent("account_disabled", fmt.Sprintf("acc_%d", i))
		appendEvent("account_created", fmt.Sprintf("acc_%d", i)) // not a signal
	}
	run := func(tr *ssf.Transmitter) {
		for {
			n, err := tr.Step(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				return
			}
		}
	}
	a := &ssf.Transmitter{Store: st, Issuer: "https://id.example", Batch: 3}
	b := &ssf.Transmitter{Store: st, Issuer: "https://id.example", Batch: 3}
	var wg sync.WaitGroup
	wg.Go(func() { run(a) })
	wg.Go(func() { run(b) })
	wg.Wait()
	appendEvent("password_set", "acc_3")
	run(&ssf.Transmitter{Store: st, Issuer: "https://id.example", Batch: 3}) // a restart
	pend, err := st.PendingSSFTokens(t.Context(), "bank", time.Time{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	subjects := map[string]int{}
	for _, p := range pend {
		var c struct {
			SubID map[string]string `json:"sub_id"`
		}
		json.Unmarshal(p.Claims, &c)
		subjects[c.SubID["sub"]]++
	}
	if len(pend) != 11 || subjects["acc_before"] != 0 || subjects["acc_3"] != 2 {
		t.Fatalf("queued %d tokens: %v", len(pend), subjects)
	}
	for s, n := range subjects {
		if n != 1 && s != "acc_3" {
			t.Errorf("%s queued %d times", s, n)
		}
	}
}

var seqN atomic.Int64

func seq() int64 { return seqN.Add(1) }
