package cli_test

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestSSFStreams(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	out, err := run(t, "ssf", "add", "--data", data, "--id", "bank", "--audience", "https://bank.example", "--event", "account-disabled")
	if err != nil || !strings.Contains(out, "/ssf/poll/bank") || !strings.Contains(out, "Authorization: Bearer ") {
		t.Fatalf("ssf add (poll): %v\n%s", err, out)
	}
	if out, err := run(t, "ssf", "add", "--data", data, "--id", "crm", "--audience", "https://crm.example", "--push", "https://crm.example/ssf", "--auth-env", "CRM_AUTH"); err != nil || !strings.Contains(out, "pushed") {
		t.Fatalf("ssf add (push): %v\n%s", err, out)
	}
	if _, err := run(t, "ssf", "add", "--data", data, "--id", "crm", "--audience", "x"); err == nil || !strings.Contains(err.Error(), "never reused") {
		t.Fatalf("a second crm: %v", err)
	}
	out, err = run(t, "ssf", "list", "--data", data)
	if err != nil || !strings.Contains(out, "bank") || !strings.Contains(out, "account-disabled") || !strings.Contains(out, "push") {
		t.Fatalf("ssf list: %v\n%s", err, out)
	}
	if strings.Contains(out, "Bearer") {
		t.Error("ssf list shows a secret")
	}
	if _, err := run(t, "ssf", "remove", "--data", data, "crm"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "ssf", "remove", "--data", data, "crm"); err == nil {
		t.Error("removed twice")
	}
	q, err := run(t, "audit", "query", "--data", data, "--json")
	if err != nil || !strings.Contains(q, "ssf_stream_added") || !strings.Contains(q, "ssf_stream_removed") {
		t.Fatalf("stream changes in the log: %v", err)
	}
}
