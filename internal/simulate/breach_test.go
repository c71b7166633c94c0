package simulate

import (
	"encoding/json"
	"os"
	"testing"
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
	b, _ := json.MarshalIndent(r, "", "  ")
	t.Logf("report:\n%s", b)
	switch {
	case r.Customers != 400 || r.NormalRequests == 0 || r.ForgedRequests != 2*60*3:
		t.Errorf("customers %d, normal requests %d, forged requests %d", r.Customers, r.NormalRequests, r.ForgedRequests)
	case r.Enforce.ForgedAccepted != 0 || r.Enforce.RecordsExposed != 0:
		t.Errorf("enforce: %d forged requests accepted, %d records exposed", r.Enforce.ForgedAccepted, r.Enforce.RecordsExposed)
	case r.Monitor.ForgedForwarded != 60*3 || r.Monitor.ExposedSubjects != 60 || !r.Monitor.ScopeExact:
		t.Errorf("monitor: %d forwarded, %d subjects exposed, scope exact %v", r.Monitor.ForgedForwarded, r.Monitor.ExposedSubjects, r.Monitor.ScopeExact)
	case r.Monitor.SecondsToFirstAlert == nil || *r.Monitor.SecondsToFirstAlert > 5:
		t.Errorf("monitor: first alert after %v s", r.Monitor.SecondsToFirstAlert)
	case r.Monitor.Alerts["forged_token"] != 60*3:
		t.Errorf("monitor: forged_token alert counted %d events, want %d", r.Monitor.Alerts["forged_token"], 60*3)
	case r.Enforce.Alerts["offboarded_custodian_key"] != 60*3 || r.Monitor.Alerts["offboarded_custodian_key"] != 60*3:
		t.Errorf("offboarded_custodian_key counted %d and %d events, want %d in each phase",
			r.Enforce.Alerts["offboarded_custodian_key"], r.Monitor.Alerts["offboarded_custodian_key"], 60*3)
	case r.Enforce.Responses["block_ip"] != 5:
		t.Errorf("enforce: %d addresses blocked, want the attacker's 5", r.Enforce.Responses["block_ip"])
	case r.Normal.FalseAlerts != 0 || r.Normal.Failures != 0:
		t.Errorf("ordinary traffic: %d false alerts, %d failures", r.Normal.FalseAlerts, r.Normal.Failures)
	}
}
