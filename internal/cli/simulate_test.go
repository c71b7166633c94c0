package cli_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// custos simulate breach --json prints the drill's report with the fields
// the drill promises, and exits 0 when custos stopped and saw the attack.
func TestSimulateBreach(t *testing.T) {
	out, err := run(t, "simulate", "breach", "--customers", "300", "--active", "20", "--targets", "50", "--json")
	if err != nil {
		t.Fatalf("simulate breach: %v\n%s", err, out)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	get := func(path string) any {
		var v any = r
		for _, k := range strings.Split(path, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		}
		return v
	}
	for _, f := range []string{"customers", "normal_requests", "forged_requests", "enforce.forged_accepted", "enforce.records_exposed",
		"monitor.forged_forwarded", "monitor.exposed_subjects", "monitor.seconds_to_first_alert", "monitor.alerts", "normal.false_alerts"} {
		if get(f) == nil {
			t.Errorf("the report has no %s", f)
		}
	}
	if get("customers") != 300.0 || get("enforce.forged_accepted") != 0.0 || get("monitor.exposed_subjects") != 50.0 || get("normal.false_alerts") != 0.0 {
		t.Errorf("report: %s", out)
	}
	if s, _ := get("monitor.seconds_to_first_alert").(float64); s <= 0 || s > 5 {
		t.Errorf("first alert after %v s", get("monitor.seconds_to_first_alert"))
	}
	if _, err := run(t, "simulate", "breach", "--customers", "0"); err == nil {
		t.Error("a drill of no customers ran")
	}
	dir := t.TempDir()
	if _, err := run(t, "clients", "list", "--data", filepath.Join(dir, "d")); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "simulate", "breach", "--data", filepath.Join(dir, "d")); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a drill in a used data directory: %v", err)
	}
}
