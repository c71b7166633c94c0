package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The drill against a running custos serve: refused, and nothing changed,
// while the serve's next signing key may not sign yet (a serve just
// started); and the flags that only make sense together.
func TestSimulateAgainstServe(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	addr := freeAddr(t)
	serveOut := start(t, "serve", "--data", data, "--addr", addr, "--log-level", "warn")
	waitFor(t, "serve", func() bool { return strings.Contains(serveOut.String(), "custos is serving") })
	before, err := run(t, "keys", "list", "--data", data, "--json")
	if err != nil {
		t.Fatal(err)
	}

	_, err = run(t, "simulate", "breach", "--url", "http://"+addr, "--data", data, "--customers", "20")
	if err == nil || !strings.Contains(err.Error(), "next signing key may sign only from") {
		t.Fatalf("drill against a serve just started: %v", err)
	}
	after, _ := run(t, "keys", "list", "--data", data, "--json")
	clients, _ := run(t, "clients", "list", "--data", data)
	accounts, _ := run(t, "accounts", "list", "--data", data)
	if after != before || strings.Contains(clients, "drill") || strings.Contains(accounts, "drill.example") {
		t.Fatalf("a refused drill changed the running custos:\nkeys %s\nclients %s\naccounts %s", after, clients, accounts)
	}

	if _, err := run(t, "simulate", "breach", "--url", "http://"+addr, "--data", filepath.Join(dir, "other"), "--customers", "20"); err == nil ||
		!strings.Contains(err.Error(), "not the data directory") {
		t.Fatalf("drill with the wrong data directory: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--url", "http://" + addr}, "--url needs --data"},
		{[]string{"--root-key-file", filepath.Join(data, "root.key")}, "are for --url"},
		{[]string{"--data", data}, "is not empty"},
	} {
		if _, err := run(t, append([]string{"simulate", "breach"}, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("simulate breach %q: %v, want %q", tc.args, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "other")); err == nil {
		t.Error("a drill with the wrong data directory created it")
	}
}
