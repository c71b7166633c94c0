package cli_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// custos serve runs the detection rules: a guard started with a route that
// only monitors raises an alert, which the command line lists, shows and
// acknowledges; an acknowledged alert is acknowledged once.
func TestAlertsFromServe(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	addr := freeAddr(t)
	// A webhook receiver: serve delivers each alert there, signed.
	received := make(chan []byte, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Custos-Signature") == "" {
			t.Error("an unsigned alert delivery")
		}
		received <- b
	}))
	defer hook.Close()
	t.Setenv("TEST_ALERT_SECRET", "a webhook secret of thirty-two bytes or more")
	if _, err := run(t, "serve", "--data", data, "--alert-webhook", "soc="+hook.URL); err == nil || !strings.Contains(err.Error(), "alert webhooks are signed") {
		t.Fatalf("serve with an unsigned webhook: %v", err)
	}
	if _, err := run(t, "serve", "--data", data, "--alert-webhook", "soc=http://soc.example/hook", "--alert-webhook-secret-env", "TEST_ALERT_SECRET"); err == nil || !strings.Contains(err.Error(), "use https") {
		t.Fatalf("serve with a plain-http webhook: %v", err)
	}
	serveOut := start(t, "serve", "--data", data, "--addr", addr, "--log-level", "warn",
		"--alert-webhook", "soc="+hook.URL+"/alerts", "--alert-webhook-secret-env", "TEST_ALERT_SECRET")
	waitFor(t, "serve", func() bool { return strings.Contains(serveOut.String(), "custos is serving") })
	if !strings.Contains(serveOut.String(), "detection      19 rules") {
		t.Errorf("serve does not say it detects:\n%s", serveOut)
	}
	if out, err := run(t, "alerts", "list", "--data", data); err != nil || !strings.Contains(out, "no open alerts") {
		t.Fatalf("alerts list before anything: %v\n%s", err, out)
	}

	policy := filepath.Join(dir, "monitor.policy")
	os.WriteFile(policy, []byte("custos-guard-policy v1\nroute GET /me/profile\n  subject token\n  data name\n  mode monitor\n"), 0o600)
	upstream, _ := ordersService(t)
	gaddr := freeAddr(t)
	gout := start(t, "guard", "--data", data, "--upstream", upstream.URL, "--policy", policy, "--listen", gaddr, "--issuer", "http://"+addr)
	waitFor(t, "the guard", func() bool { return strings.Contains(gout.String(), "custos guard on") })

	var listed []struct {
		ID, Rule, Severity, State string
		Count                     int
	}
	waitFor(t, "the guard_monitor alert", func() bool {
		out, err := run(t, "alerts", "list", "--data", data, "--json")
		if err != nil {
			t.Fatal(err)
		}
		listed = nil
		json.Unmarshal([]byte(out), &listed)
		return len(listed) == 1
	})
	a := listed[0]
	if a.Rule != "guard_monitor" || a.Severity != "medium" || a.State != "open" || a.Count != 1 {
		t.Fatalf("alert %+v", a)
	}
	select {
	case b := <-received:
		if !strings.Contains(string(b), `"id":"`+a.ID+`"`) {
			t.Errorf("the webhook received %s", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook received nothing in 10 s")
	}
	show, err := run(t, "alerts", "show", "--data", data, a.ID)
	if err != nil || !strings.Contains(show, "A guard started with routes that only monitor") || !strings.Contains(show, `"type":"guard_started"`) {
		t.Fatalf("alerts show: %v\n%s", err, show)
	}
	if _, err := run(t, "alerts", "ack", "--data", data, a.ID); err == nil {
		t.Fatal("an acknowledgement without a note was taken")
	}
	if out, err := run(t, "alerts", "ack", "--data", data, a.ID, "--note", "monitor rollout approved in CHG-1142"); err != nil || !strings.Contains(out, "acknowledged "+a.ID) {
		t.Fatalf("alerts ack: %v\n%s", err, out)
	}
	if _, err := run(t, "alerts", "ack", "--data", data, a.ID, "--note", "again"); err == nil || !strings.Contains(err.Error(), "not open") {
		t.Fatalf("a second acknowledgement: %v", err)
	}
	if _, err := run(t, "alerts", "show", "--data", data, "no-such-alert"); err == nil || !strings.Contains(err.Error(), `no alert "no-such-alert"`) {
		t.Fatalf("alerts show of no alert: %v", err)
	}
	out, err := run(t, "alerts", "list", "--data", data, "--state", "acked")
	if err != nil || !strings.Contains(out, a.ID) || !strings.Contains(out, "acked") {
		t.Fatalf("alerts list --state acked: %v\n%s", err, out)
	}
	q, err := run(t, "audit", "query", "--data", data, "--class", "alert", "--json")
	if err != nil || !strings.Contains(q, `"alert_raised"`) || !strings.Contains(q, `"alert_acknowledged"`) || !strings.Contains(q, "CHG-1142") {
		t.Fatalf("the alert's events in the log: %v\n%s", err, q)
	}
}

func TestAlertsRules(t *testing.T) {
	out, err := run(t, "alerts", "rules")
	if err != nil || !strings.HasPrefix(out, "custos-rules v1\n") || !strings.Contains(out, "rule forged_token") {
		t.Fatalf("alerts rules: %v\n%.200s", err, out)
	}
	file := filepath.Join(t.TempDir(), "mine.rules")
	os.WriteFile(file, []byte(out), 0o600)
	if out, err := run(t, "alerts", "rules", "--check", file); err != nil || !strings.Contains(out, "19 rules") {
		t.Fatalf("alerts rules --check of the built-in rules: %v\n%s", err, out)
	}
	os.WriteFile(file, []byte("custos-rules v1\nrule x\n    severity loud\n"), 0o600)
	if _, err := run(t, "alerts", "rules", "--check", file); err == nil || !strings.Contains(err.Error(), "mine.rules:3: severity takes one of") {
		t.Fatalf("alerts rules --check of a bad file: %v", err)
	}
	if _, err := run(t, "serve", "--data", t.TempDir(), "--rules", file); err == nil || !strings.Contains(err.Error(), "mine.rules:3") {
		t.Fatalf("serve with a bad rules file: %v", err)
	}
	if _, err := run(t, "alerts", "list", "--state", "closed"); err == nil {
		t.Fatal("alerts list --state closed was accepted")
	}
}
