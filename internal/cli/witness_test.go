package cli_test

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/cli"
)

// syncBuffer is a bytes.Buffer safe for a running command and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// start runs a long-running custos command until the test ends.
func start(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- cli.Run(ctx, args, cli.IO{Stdin: strings.NewReader(""), Stdout: out, Stderr: errOut}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("custos %s: %v\n%s", args[0], err, errOut)
		}
	})
	return out
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := cli.Run(t.Context(), args, cli.IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut})
	return out.String(), err
}

// waitFor polls until f succeeds.
func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// custos serve --witness sends its checkpoints to a `custos witness`
// started with the log key serve prints, and `custos witness checkpoint`
// then hands out the cosigned checkpoint.
func TestServeWithWitness(t *testing.T) {
	dir := t.TempDir()
	wdir, ldir := filepath.Join(dir, "witness"), filepath.Join(dir, "log")
	wkey, err := run(t, "witness", "key", "--data", wdir, "--name", "witness.test/w1")
	if err != nil {
		t.Fatal(err)
	}
	wkey = strings.TrimSpace(wkey)
	wv, err := auditlog.NewCosignatureVerifier(wkey)
	if err != nil {
		t.Fatalf("witness key %q: %v", wkey, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	waddr := ln.Addr().String()
	ln.Close()

	serveOut := start(t, "serve", "--data", ldir, "--addr", "127.0.0.1:0", "--log-level", "warn",
		"--witness", "http://"+waddr+"="+wkey)
	keyLine := regexp.MustCompile(`(?m)^  audit log key  (\S+)$`)
	waitFor(t, "serve's audit log key", func() bool { return keyLine.MatchString(serveOut.String()) })
	if !strings.Contains(serveOut.String(), "  witness        http://"+waddr+"\n") {
		t.Fatalf("serve does not list the witness:\n%s", serveOut)
	}
	logKey := keyLine.FindStringSubmatch(serveOut.String())[1]
	logV, err := note.NewVerifier(logKey)
	if err != nil {
		t.Fatalf("serve printed %q as the audit log key: %v", logKey, err)
	}

	witnessOut := start(t, "witness", "--data", wdir, "--addr", waddr, "--log", logKey, "--log-level", "warn")
	waitFor(t, "the witness to start", func() bool { return strings.Contains(witnessOut.String(), wkey) })
	if !strings.Contains(witnessOut.String(), "custos serve --witness http://"+waddr+"="+wkey) {
		t.Fatalf("the witness does not say how to configure the log:\n%s", witnessOut)
	}

	var cp string
	waitFor(t, "a cosigned checkpoint", func() bool {
		cp, err = run(t, "witness", "checkpoint", "--data", wdir, "--origin", logV.Name())
		return err == nil
	})
	c, n, err := auditlog.OpenCheckpoint([]byte(cp), logV, wv)
	if err != nil {
		t.Fatalf("the witness's checkpoint does not open with the log and witness keys: %v\n%s", err, cp)
	}
	if err := auditlog.CheckQuorum(n, 1, wv); err != nil || c.Size == 0 {
		t.Fatalf("checkpoint of size %d: %v", c.Size, err)
	}
}
