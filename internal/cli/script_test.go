package cli_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/custos-dev/custos/internal/cli"
)

// TestMain lets the scripts run "custos" as a command: testscript runs the
// test binary again under that name, and custos runs in-process, exactly as
// cmd/custos/main.go runs it.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"custos": func() {
			err := cli.Run(context.Background(), os.Args[1:], cli.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
			if err != nil && cli.ExitCode(err) != 0 {
				fmt.Fprintln(os.Stderr, "custos:", err)
			}
			os.Exit(cli.ExitCode(err))
		},
	})
}

// TestScripts runs testdata/script/*.txtar. Besides the standard commands,
// scripts have:
//
//	status N PROG ARGS...  run PROG like exec, and want exit status N
//	genkey FILE            write a new Ed25519 private key to FILE (PKCS#8 PEM)
//	json PATH VALUE        the last stdout is JSON and PATH in it is VALUE
//	json PATH              the last stdout is JSON and PATH exists in it
//	jsonenv VAR PATH       set $VAR to the value at PATH in the last stdout
//
// A PATH is slash-separated steps: an object member, an array index, "#" for
// the length of an array or object, or "key=value" for the first array
// element whose member key is value. "/" alone is the whole document.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"status":  cmdStatus,
			"genkey":  cmdGenkey,
			"json":    cmdJSON,
			"jsonenv": cmdJSONEnv,
		},
	})
}

func cmdStatus(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: status N PROG ARGS...")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil || want < 0 {
		ts.Fatalf("status: %q is not an exit status", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		ee, ok := errors.AsType[*exec.ExitError](err)
		if !ok {
			ts.Fatalf("status: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

func cmdGenkey(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: genkey FILE")
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	ts.Check(err)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
}

func cmdJSON(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: json PATH [VALUE]")
	}
	v, err := jsonPath(ts.ReadFile("stdout"), args[0])
	if len(args) == 1 {
		switch {
		case neg && err == nil:
			ts.Fatalf("%s is in the JSON output: %s", args[0], v)
		case !neg && err != nil:
			ts.Fatalf("%v", err)
		}
		return
	}
	if err != nil {
		ts.Fatalf("%v", err)
	}
	if got := v; (got == args[1]) == neg {
		if neg {
			ts.Fatalf("%s is %s", args[0], got)
		}
		ts.Fatalf("%s is %s, want %s", args[0], got, args[1])
	}
}

func cmdJSONEnv(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: jsonenv VAR PATH")
	}
	v, err := jsonPath(ts.ReadFile("stdout"), args[1])
	if err != nil {
		ts.Fatalf("%v", err)
	}
	ts.Setenv(args[0], v)
}

// jsonPath finds path in doc, which must be exactly one JSON value, and
// returns the value found: strings as they are, anything else as JSON.
func jsonPath(doc, path string) (string, error) {
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("stdout is not JSON: %v", err)
	}
	if dec.More() {
		return "", fmt.Errorf("stdout has more than one JSON value")
	}
	if path != "/" {
		for step := range strings.SplitSeq(path, "/") {
			var err error
			if v, err = jsonStep(v, step); err != nil {
				return "", fmt.Errorf("%s: %v", path, err)
			}
		}
	}
	if s, ok := v.(string); ok {
		return s, nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

func jsonStep(v any, step string) (any, error) {
	switch v := v.(type) {
	case []any:
		if step == "#" {
			return json.Number(strconv.Itoa(len(v))), nil
		}
		if key, want, ok := strings.Cut(step, "="); ok {
			for _, e := range v {
				if m, ok := e.(map[string]any); ok && fmt.Sprint(m[key]) == want {
					return e, nil
				}
			}
			return nil, fmt.Errorf("no element with %s", step)
		}
		i, err := strconv.Atoi(step)
		if err != nil || i < 0 || i >= len(v) {
			return nil, fmt.Errorf("no element %q in an array of %d", step, len(v))
		}
		return v[i], nil
	case map[string]any:
		if step == "#" {
			return json.Number(strconv.Itoa(len(v))), nil
		}
		e, ok := v[step]
		if !ok {
			return nil, fmt.Errorf("no member %q", step)
		}
		return e, nil
	default:
		return nil, fmt.Errorf("cannot take %q of %T", step, v)
	}
}

func TestJSONPath(t *testing.T) {
	const doc = `[{"kid":"a","state":"active","n":1,"tags":["x"]},{"kid":"b.c","state":"pending","ok":true}]`
	tests := []struct {
		path, want string
		fail       bool
	}{
		{path: "/", want: `[{"kid":"a","n":1,"state":"active","tags":["x"]},{"kid":"b.c","ok":true,"state":"pending"}]`},
		{path: "#", want: "2"},
		{path: "0/kid", want: "a"},
		{path: "1/kid", want: "b.c"},
		{path: "state=pending/kid", want: "b.c"},
		{path: "kid=b.c/ok", want: "true"},
		{path: "0/n", want: "1"},
		{path: "0/tags", want: `["x"]`},
		{path: "0/#", want: "4"},
		{path: "2", fail: true},
		{path: "-1", fail: true},
		{path: "state=revoked", fail: true},
		{path: "0/missing", fail: true},
		{path: "0/kid/x", fail: true},
		{path: "kid", fail: true},
	}
	for _, tc := range tests {
		got, err := jsonPath(doc, tc.path)
		if (err != nil) != tc.fail || (!tc.fail && got != tc.want) {
			t.Errorf("jsonPath(%q) = %q, %v; want %q (fail %v)", tc.path, got, err, tc.want, tc.fail)
		}
	}
	for _, bad := range []string{"", "not json", "{} {}", `{"a":`} {
		if _, err := jsonPath(bad, "/"); err == nil {
			t.Errorf("jsonPath(%q) accepted", bad)
		}
	}
}
