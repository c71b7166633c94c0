package simulate

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/detect"
	"github.com/custos-dev/custos/internal/keys"
	"github.com/custos-dev/custos/internal/node"
	"github.com/custos-dev/custos/internal/store"
)

// The drill, small: in enforce mode no forged request gets data; in
// monitor mode the attack gets through, the first alert comes within 5 s
// of the first forged request, and the audit log's scope is exactly what
// the attacker got; ordinary customers raise no alert.
func TestBreachDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("the drill takes seconds")
	}
	var progress *os.File
	if testing.Verbose() {
		progress = os.Stdout
	}
	cfg := BreachConfig{Customers: 400, Active: 40, Targets: 60, Dir: t.TempDir()}
	if progress != nil {
		cfg.Progress = progress
	}
	r, err := Breach(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, r, 400, 60)
}

// checkReport checks a drill's report: customers seeded, targets read in
// each phase.
func checkReport(t *testing.T, r *Report, customers, targets int) {
	t.Helper()
	events := int64(targets * 3)
	b, _ := json.MarshalIndent(r, "", "  ")
	t.Logf("report:\n%s", b)
	switch {
	case r.Customers != customers || r.NormalRequests == 0 || r.ForgedRequests != 2*targets*3:
		t.Errorf("customers %d, normal requests %d, forged requests %d", r.Customers, r.NormalRequests, r.ForgedRequests)
	case r.Enforce.ForgedAccepted != 0 || r.Enforce.RecordsExposed != 0:
		t.Errorf("enforce: %d forged requests accepted, %d records exposed", r.Enforce.ForgedAccepted, r.Enforce.RecordsExposed)
	case r.Monitor.ForgedForwarded != targets*3 || r.Monitor.ExposedSubjects != targets || !r.Monitor.ScopeExact:
		t.Errorf("monitor: %d forwarded, %d subjects exposed, scope exact %v", r.Monitor.ForgedForwarded, r.Monitor.ExposedSubjects, r.Monitor.ScopeExact)
	case r.Monitor.SecondsToFirstAlert == nil || *r.Monitor.SecondsToFirstAlert > 5:
		t.Errorf("monitor: first alert after %v s", r.Monitor.SecondsToFirstAlert)
	case r.Monitor.Alerts["forged_token"] != events:
		t.Errorf("monitor: forged_token alert counted %d events, want %d", r.Monitor.Alerts["forged_token"], events)
	case r.Enforce.Alerts["offboarded_custodian_key"] != events || r.Monitor.Alerts["offboarded_custodian_key"] != events:
		t.Errorf("offboarded_custodian_key counted %d and %d events, want %d in each phase",
			r.Enforce.Alerts["offboarded_custodian_key"], r.Monitor.Alerts["offboarded_custodian_key"], events)
	case r.Enforce.Responses["block_ip"] != 5:
		t.Errorf("enforce: %d addresses blocked, want the attacker's 5", r.Enforce.Responses["block_ip"])
	case r.Normal.FalseAlerts != 0 || r.Normal.Failures != 0:
		t.Errorf("ordinary traffic: %d false alerts, %d failures", r.Normal.FalseAlerts, r.Normal.Failures)
	}
}

// The drill against a running custos, twice: it seeds, attacks and
// reports through the running custos's own endpoints, store and
// detector, and leaves it tidy: the legacy key revoked, the drill's
// client removed.
func TestBreachDrillAgainstARunningCustos(t *testing.T) {
	if testing.Short() {
		t.Skip("the drill takes seconds")
	}
	ctx := t.Context()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	kc := keys.Config{JWKSMaxAge: time.Second, PublishLead: time.Second}
	n, err := node.Open(ctx, node.Config{DataDir: dir, Addr: ln.Addr().String(), Keys: kc})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() { n.Serve(serveCtx, ln); close(served) }()
	defer func() { stop(); <-served }()
	det, err := n.Detector(ctx, detect.DefaultRules(), nil)
	if err != nil {
		t.Fatal(err)
	}
	go det.Run(serveCtx)
	// A custos that has run a while: its next key is published long
	// enough to sign when the drill retires the legacy key.
	time.Sleep(kc.PublishLead + 100*time.Millisecond)

	cfg := BreachConfig{Customers: 300, Active: 30, Targets: 40, URL: n.Config().Issuer, Dir: dir, Keys: kc}
	if testing.Verbose() {
		cfg.Progress = os.Stdout
	}
	for run := range 2 {
		r, err := Breach(ctx, cfg)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		checkReport(t, r, 300, 40)
	}

	list, err := n.Custody.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	legacy := 0
	for _, k := range list {
		if k.Imported {
			legacy++
			if k.State != store.KeyRevoked {
				t.Errorf("the drill left its legacy key %s %s", k.ID, k.State)
			}
		}
	}
	cs, err := n.Clients.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if legacy != 2 || len(cs) != 0 {
		t.Errorf("after two drills: %d legacy keys, clients left %+v", legacy, cs)
	}

	// Not its data directory, not loopback, no data directory: refused.
	other := BreachConfig{Customers: 10, URL: cfg.URL, Dir: t.TempDir()}
	if _, err := Breach(ctx, other); err == nil || !strings.Contains(err.Error(), "not the data directory") {
		t.Errorf("drill against a custos with the wrong data directory: %v", err)
	}
	for _, bad := range []BreachConfig{{URL: "http://192.0.2.1:8080", Dir: dir}, {URL: cfg.URL}} {
		if _, err := Breach(ctx, bad); err == nil || !strings.Contains(err.Error(), "url:") {
			t.Errorf("drill against %q with data %q: %v", bad.URL, bad.Dir, err)
		}
	}
}
