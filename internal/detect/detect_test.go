package detect_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/detect"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/store/sqlite"
	"github.com/custos-dev/custos/internal/tlog"
)

const origin = "example.com/detect-test"

type env struct {
	st *sqlite.Store
	tl *tlog.Log
	al *audit.Log
}

func newEnv(t testing.TB) *env {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := auditlog.NewNoteSigner(origin, key)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tlog.Open(t.Context(), st, tlog.Config{Origin: origin, Key: signer, Verifier: verifier})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.Close(); st.Close() })
	return &env{st: st, tl: tl, al: audit.New(tl, st, nil)}
}

func (e *env) detector(t *testing.T, onAlert func(store.Alert)) *detect.Detector {
	t.Helper()
	d, err := detect.New(t.Context(), detect.Config{Rules: detect.DefaultRules(), Store: e.st, Encode: e.al.Encode, OnAlert: onAlert, Batch: 64})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// drain steps d until it has read the whole log.
func drain(t *testing.T, d *detect.Detector) {
	t.Helper()
	for {
		n, err := d.Step(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

func (e *env) emit(t *testing.T, evs ...event.Event) {
	t.Helper()
	for _, ev := range evs {
		if err := e.al.Emit(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

func forged(i int, kid string) event.Event {
	return event.Event{Class: event.ClassAccess, Type: "access_monitored", Actor: fmt.Sprintf("acc_%d", i), Subject: fmt.Sprintf("acc_%d", i),
		Client: "shop-app", IP: fmt.Sprintf("203.0.113.%d", i%4),
		Fields: map[string]any{"reason": "forged_token", "kid": kid, "status": int64(200), "route": "GET /me/profile", "data": "name", "user_agent": "curl/8"}}
}

func alerts(t *testing.T, st *sqlite.Store) map[string]store.Alert {
	t.Helper()
	as, err := st.Alerts(t.Context(), store.AlertFilter{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.Alert{}
	for _, a := range as {
		if _, dup := out[a.Rule+" "+a.Group]; dup && a.State == store.AlertOpen {
			t.Fatalf("two open alerts for %s %q", a.Rule, a.Group)
		}
		out[a.Rule+" "+a.Group] = a
	}
	return out
}

// A forged-token attack raises one critical alert that grows with every
// forged request, and one for the fingerprint reading many customers;
// each raised alert is in the log, and OnAlert hears of it once.
func TestDetectorRaisesAndGroups(t *testing.T) {
	e := newEnv(t)
	var heard []string
	d := e.detector(t, func(a store.Alert) { heard = append(heard, a.ID) })
	for i := range 100 {
		e.emit(t, forged(i, "kid-legacy"))
	}
	drain(t, d)
	got := alerts(t, e.st)
	f, ok := got["forged_token kid-legacy"]
	if !ok || f.Count != 100 || f.Severity != "critical" || f.State != store.AlertOpen {
		t.Fatalf("forged_token alert %+v (all: %v)", f, got)
	}
	if fp, ok := got["many_customers_one_fingerprint 203.0.113.0 shop-app curl/8"]; !ok || fp.Count != 6 {
		// 25 requests from each of 4 IPs: the 20th to 25th of each fire.
		t.Fatalf("fingerprint alert %+v", fp)
	}
	if len(heard) != len(got) {
		t.Fatalf("OnAlert heard %d alerts, %d stored", len(heard), len(got))
	}
	var raised []string
	err := e.al.Query(t.Context(), audit.Filter{Types: []string{detect.EventAlertRaised}}, func(r audit.Record) error {
		raised = append(raised, r.Event.Fields["alert_id"].(string))
		return nil
	})
	if err != nil || len(raised) != len(got) {
		t.Fatalf("%d alert_raised events for %d alerts: %v", len(raised), len(got), err)
	}
	// More of the same grows the same alerts; the detector does not read
	// its own events as signals.
	e.emit(t, forged(100, "kid-legacy"))
	drain(t, d)
	if a := alerts(t, e.st)["forged_token kid-legacy"]; a.Count != 101 || len(alerts(t, e.st)) != len(got) {
		t.Fatalf("after one more: %+v", a)
	}
}

// Restarting the detector mid-stream, at every point, raises exactly the
// alerts, with exactly the counts, that one detector reading everything
// raises.
func TestRestartLosesAndRepeatsNothing(t *testing.T) {
	events := attackStream()
	want := func() map[string]store.Alert {
		e := newEnv(t)
		e.emit(t, events...)
		drain(t, e.detector(t, nil))
		return alerts(t, e.st)
	}()
	if len(want) < 3 {
		t.Fatalf("the stream raises only %d alerts", len(want))
	}
	e := newEnv(t)
	var mu sync.Mutex
	heard := map[string]int{}
	onAlert := func(a store.Alert) { mu.Lock(); heard[a.ID]++; mu.Unlock() }
	d := e.detector(t, onAlert)
	for i, ev := range events {
		e.emit(t, ev)
		if i%37 == 0 {
			drain(t, d)
			d = e.detector(t, onAlert) // a restart
		}
	}
	drain(t, d)
	got := alerts(t, e.st)
	if len(got) != len(want) {
		t.Fatalf("%d alerts after restarts, %d without", len(got), len(want))
	}
	for k, w := range want {
		g := got[k]
		if g.Count != w.Count || g.FirstAt != w.FirstAt || g.LastAt != w.LastAt {
			t.Errorf("%s: count %d first %v last %v after restarts; %d %v %v without", k, g.Count, g.FirstAt, g.LastAt, w.Count, w.FirstAt, w.LastAt)
		}
		if heard[g.ID] != 1 {
			t.Errorf("OnAlert heard %s %d times", g.ID, heard[g.ID])
		}
	}
}

// attackStream is ordinary sign-ins and reads with a password spray and a
// forged-token attack in them; events carry their own times, a second
// apart, so the windows are the same however the stream is read.
func attackStream() []event.Event {
	t0 := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	var out []event.Event
	for i := range 400 {
		at := t0.Add(time.Duration(i) * time.Second)
		acc, ip := fmt.Sprintf("acc_%d", i%50), fmt.Sprintf("198.51.100.%d", i%50)
		var ev event.Event
		switch {
		case i%10 == 3 && i > 100 && i < 300:
			ev = forged(i, "kid-legacy")
		case i%10 == 7 && i > 150:
			ev = event.Event{Class: event.ClassAuthn, Type: "login_failed", IP: "203.0.113.77",
				Fields: map[string]any{"reason": "unknown_account", "login_id_hash": fmt.Sprintf("h%03d", i)}}
		default:
			ev = event.Event{Class: event.ClassAccess, Type: "data_read", Actor: acc, Subject: acc, Client: "shop-app", IP: ip,
				Fields: map[string]any{"status": int64(200), "route": "GET /me/profile", "data": "name", "kid": "kid-active"}}
		}
		ev.Time = at
		out = append(out, ev)
	}
	return out
}

// An acknowledged alert grows no more; the pattern going on opens another.
func TestAcknowledgedAlertStaysClosed(t *testing.T) {
	e := newEnv(t)
	d := e.detector(t, nil)
	e.emit(t, forged(1, "kid-legacy"))
	drain(t, d)
	a := alerts(t, e.st)["forged_token kid-legacy"]
	a.AckedBy, a.AckNote, a.AckedAt = "op_kim", "investigating", time.Now()
	ack, err := e.al.Encode(event.Event{Class: event.ClassAlert, Type: detect.EventAlertAcknowledged, Actor: "op_kim", Fields: map[string]any{"alert_id": a.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.AckAlert(t.Context(), a, ack); err != nil {
		t.Fatal(err)
	}
	e.emit(t, forged(2, "kid-legacy"))
	drain(t, d) // d still thinks a is open: the store says otherwise
	as, err := e.st.Alerts(t.Context(), store.AlertFilter{Rule: "forged_token"})
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 2 || as[1].ID != a.ID || as[1].Count != 1 || as[1].State != store.AlertAcked || as[0].State != store.AlertOpen || as[0].Count != 1 {
		t.Fatalf("alerts after acknowledging: %+v", as)
	}
}

// The detector keeps up while appends go on beside it, and a rule can be
// given as a file.
func TestCustomRulesWhileAppending(t *testing.T) {
	rules, err := detect.ParseRules("mine.rules", strings.NewReader(`custos-rules v1
rule staff_reads_entrance_codes
    title Staff read an entrance code
    severity low
    reference our own policy
    match type=data_read data~entrance_code purpose?
    group actor
`))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	d, err := detect.New(t.Context(), detect.Config{Rules: rules, Store: e.st, Encode: e.al.Encode})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	for i := range 50 {
		e.emit(t, event.Event{Class: event.ClassAccess, Type: "data_read", Actor: "op_park", Subject: fmt.Sprintf("acc_%d", i),
			Fields: map[string]any{"data": "address entrance_code", "purpose": "support"}})
	}
	deadline := time.Now().Add(10 * time.Second)
	for alerts(t, e.st)["staff_reads_entrance_codes op_park"].Count != 50 {
		if time.Now().After(deadline) {
			t.Fatalf("alert after 10 s: %+v", alerts(t, e.st))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
}

// BenchmarkDetector measures the detector reading a log of ordinary
// traffic with an attack in it, every built-in rule on: events per second
// through Run (read from the store, decoded, run through every rule, each
// batch's alerts and position stored).
func BenchmarkDetector(b *testing.B) {
	e := newEnv(b)
	const n = 200_000
	events := mixedStream(n)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if err := e.al.Emit(context.Background(), events[i]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ResetTimer()
	read := 0
	for b.Loop() {
		b.StopTimer()
		d, err := detect.New(context.Background(), detect.Config{Name: fmt.Sprintf("bench-%d", read), Rules: detect.DefaultRules(), Store: e.st, Encode: e.al.Encode})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		b.StartTimer()
		go func() { d.Run(ctx); close(done) }()
		for d.Next() < n {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		cancel()
		<-done
		read += n
		b.StartTimer()
	}
	b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "events/s")
}

// mixedStream is n events of ordinary visits (sign-in, session, token,
// reads, a refresh, another read; now and then a mistyped password) with
// one forged read in a hundred from a few IPs, a millisecond apart.
func mixedStream(n int) []event.Event {
	t0 := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	out := make([]event.Event, 0, n)
	for v := 0; len(out) < n; v++ {
		acc, ip, sid := fmt.Sprintf("acc_%d", v%100_000), fmt.Sprintf("198.51.%d.%d", v/250%250, v%250), fmt.Sprintf("sid_%d", v)
		read := func(route, data string) event.Event {
			return event.Event{Class: event.ClassAccess, Type: "data_read", Actor: acc, Subject: acc, Client: "shop-app", IP: ip,
				Fields: map[string]any{"method": "GET", "mode": "enforce", "route": route, "data": data, "status": int64(200), "size": int64(512),
					"jti": fmt.Sprintf("jti_%d", v), "kid": "kid-active", "sid": sid, "user_agent": "ShopApp/3.2"}}
		}
		visit := []event.Event{
			{Class: event.ClassAuthn, Type: "login_succeeded", Actor: acc, Subject: acc, IP: ip, Fields: map[string]any{"device": false}},
			{Class: event.ClassAuthn, Type: "session_started", Actor: acc, Subject: acc, Client: "shop-app", IP: ip, Fields: map[string]any{"sid": sid}},
			{Class: event.ClassToken, Type: "token_issued", Actor: "shop-app", Subject: acc, Client: "shop-app", IP: ip,
				Fields: map[string]any{"grant": "authorization_code", "kid": "kid-active", "access_jti": fmt.Sprintf("jti_%d", v), "sid": sid}},
			read("GET /me/profile", "name email phone"),
			read("GET /me/addresses", "name phone address entrance_code third_party_address"),
			read("GET /me/orders", "order_history"),
			{Class: event.ClassToken, Type: "token_issued", Actor: "shop-app", Subject: acc, Client: "shop-app", IP: ip,
				Fields: map[string]any{"grant": "refresh_token", "kid": "kid-active", "access_jti": fmt.Sprintf("jti_r%d", v), "sid": sid}},
			read("GET /me/orders", "order_history"),
		}
		if v%10 == 3 {
			visit = append([]event.Event{{Class: event.ClassAuthn, Type: "login_failed", Actor: acc, Subject: acc, IP: ip,
				Fields: map[string]any{"reason": "bad_password"}}}, visit...)
		}
		if v%12 == 5 {
			visit = append(visit, forged(v, "kid-legacy"))
		}
		out = append(out, visit...)
	}
	out = out[:n]
	for i := range out {
		out[i].Time = t0.Add(time.Duration(i) * time.Millisecond)
	}
	return out
}

// fakeResponder records responses.
type fakeResponder struct {
	mu                          sync.Mutex
	blocked, families, relogins []string
}

func (f *fakeResponder) BlockIP(_ context.Context, ip string, until time.Time, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blocked = append(f.blocked, ip+" "+reason)
	return nil
}

func (f *fakeResponder) RevokeFamily(_ context.Context, family string, _ time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.families = append(f.families, family)
	return 3, nil
}

func (f *fakeResponder) RevokeSubject(_ context.Context, subject string, _ time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.relogins = append(f.relogins, subject)
	return 2, nil
}

// Responses run once per action and target in a while, and are recorded:
// the built-in forged_token rule blocks the forger's IPs; a rules file can
// revoke a reused refresh token's family or make a subject sign in again.
func TestResponses(t *testing.T) {
	e := newEnv(t)
	rules, err := detect.ParseRules("r.rules", strings.NewReader(detect.DefaultRulesText()+`
rule reused_family
    title Reuse
    severity low
    reference test
    match type=refresh_reused
    group family
    response revoke_family

rule relogin
    title Relogin
    severity low
    reference test
    match type=session_hijack_suspected
    response force_relogin
`))
	if err != nil {
		t.Fatal(err)
	}
	resp := &fakeResponder{}
	d, err := detect.New(t.Context(), detect.Config{Rules: rules, Store: e.st, Encode: e.al.Encode, Responder: resp})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		e.emit(t, forged(i, "kid-legacy")) // IPs 203.0.113.0 to .3
	}
	e.emit(t,
		event.Event{Class: event.ClassToken, Type: "refresh_reused", Client: "shop-app", Fields: map[string]any{"family": "fam_1"}},
		event.Event{Class: event.ClassToken, Type: "refresh_reused", Client: "shop-app", Fields: map[string]any{"family": "fam_1"}},
		event.Event{Class: event.ClassAuthn, Type: "session_hijack_suspected", Subject: "acc_7"},
	)
	drain(t, d)
	slices.Sort(resp.blocked)
	if want := []string{"203.0.113.0 forged_token", "203.0.113.1 forged_token", "203.0.113.2 forged_token", "203.0.113.3 forged_token"}; !slices.Equal(resp.blocked, want) {
		t.Errorf("blocked %q, want %q", resp.blocked, want)
	}
	if !slices.Equal(resp.families, []string{"fam_1"}) || !slices.Equal(resp.relogins, []string{"acc_7"}) {
		t.Errorf("families %q, relogins %q", resp.families, resp.relogins)
	}
	var recorded []string
	e.al.Query(t.Context(), audit.Filter{Types: []string{detect.EventAlertResponse}}, func(r audit.Record) error {
		recorded = append(recorded, r.Event.Fields["action"].(string))
		return nil
	})
	if len(recorded) != 6 {
		t.Errorf("%d alert_response events, want 6: %q", len(recorded), recorded)
	}
}

// A rule written in Go that counts by the clock hour comes out the same
// across a restart: the restart re-reads the hour.
func TestBaselineSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	t0 := time.Now().Add(-30 * time.Minute).Truncate(time.Hour)
	own := func(i int) event.Event {
		return event.Event{Time: t0.Add(time.Duration(i) * 5 * time.Second), Class: event.ClassAccess, Type: "data_read", Actor: "acc_1", Subject: "acc_1",
			IP: "198.51.100.1", Client: "shop-app", Fields: map[string]any{"status": int64(200), "route": "GET /me/orders", "data": "order_history"}}
	}
	d := e.detector(t, nil)
	for i := range 180 {
		e.emit(t, own(i))
	}
	drain(t, d)
	d = e.detector(t, nil) // a restart
	for i := 180; i < 220; i++ {
		e.emit(t, own(i))
	}
	drain(t, d)
	if a := alerts(t, e.st)["reads_above_baseline acc_1"]; a.Count != 21 {
		t.Fatalf("reads_above_baseline after a restart: %+v", a)
	}
}

// Who holds a key and who has left come from the store, so a detector
// started long after both (nothing of either in what it re-reads) still
// raises the use of a departed custodian's key, before and after a
// restart.
func TestOffboardedCustodianFromTheStore(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if err := e.st.InsertKey(ctx, store.Key{ID: "kid-legacy", Algorithm: "EdDSA", State: store.KeyRetired, PublicJWK: []byte(`{}`),
		Sealed: []byte{1}, Sealer: "test", Custodian: "cli:dana", Imported: true, CreatedAt: time.Now().Add(-48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.OffboardCustodian(ctx, store.Offboarding{Custodian: "cli:dana", At: time.Now().Add(-24 * time.Hour), Actor: "ops", Reason: "left"}); err != nil {
		t.Fatal(err)
	}
	d := e.detector(t, nil)
	e.emit(t, forged(1, "kid-legacy"), forged(2, "kid-other"))
	drain(t, d)
	d = e.detector(t, nil) // a restart
	e.emit(t, forged(3, "kid-legacy"))
	drain(t, d)
	as := alerts(t, e.st)
	if a := as["offboarded_custodian_key kid-legacy"]; a.Count != 2 || a.Severity != "critical" {
		t.Fatalf("offboarded_custodian_key: %+v", a)
	}
	if _, ok := as["offboarded_custodian_key kid-other"]; ok {
		t.Fatal("offboarded_custodian_key fired for a key nobody offboarded held")
	}
}
