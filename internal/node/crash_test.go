package node_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/clients"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/node"
	"github.com/custos-dev/custos/internal/store/sqlite"
)

// TestCrashChild is the serving custos TestCrashSafety kills. It runs only
// when started by that test.
func TestCrashChild(t *testing.T) {
	dir, addr := os.Getenv("CUSTOS_CRASH_DIR"), os.Getenv("CUSTOS_CRASH_ADDR")
	if dir == "" {
		t.Skip("started by TestCrashSafety")
	}
	n, err := node.Open(context.Background(), node.Config{DataDir: dir, Addr: addr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(3)
	}
	// Heavy appends beside the requests, many at once, so that commits
	// are large enough to go to segment files: each is announced on
	// stdout once it is acknowledged.
	var out sync.Mutex
	pad := strings.Repeat("p", 200)
	for g := range crashAppenders {
		go func() {
			for i := 0; ; i++ {
				marker := fmt.Sprintf("%d-%d-%d", os.Getpid(), g, i)
				_, err := n.Audit.Append(context.Background(), event.Event{Class: event.ClassAdmin, Type: "crash_test", Actor: "test",
					Fields: map[string]any{"marker": marker, "pad": pad}})
				if err != nil {
					continue
				}
				out.Lock()
				os.Stdout.WriteString(marker + "\n")
				out.Unlock()
			}
		}()
	}
	n.Serve(context.Background(), ln) // until killed
	os.Exit(4)
}

// crashAppenders is how many goroutines append events in the killed custos.
const crashAppenders = 256

// TestCrashSafety kills a serving custos with SIGKILL during heavy appends,
// again and again. After every restart, every event whose request was
// answered is in the audit log, and every checkpoint published before the
// crash is consistent with the log's checkpoint after it.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts custos 20 times")
	}
	dir := t.TempDir()
	n, err := node.Open(t.Context(), node.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := n.Clients.Add(t.Context(), clients.Spec{ID: "svc", Scopes: []string{"orders:read"}, Audiences: []string{"orders"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	origin := n.Log.Origin()
	n.Close()

	acked := map[string]bool{}    // jti of every token custos answered with
	appended := map[string]bool{} // marker of every event acknowledged
	var published [][]byte        // every checkpoint custos served
	const rounds = 20
	for round := range rounds {
		base, stop := startChild(t, dir)
		jtis, cps := load(t, base, secret, time.Duration(50+rand.IntN(250))*time.Millisecond)
		markers := stop() // SIGKILL
		for _, j := range jtis {
			acked[j] = true
		}
		for _, m := range markers {
			appended[m] = true
		}
		published = append(published, cps...)
		if len(jtis) == 0 || len(markers) == 0 {
			t.Fatalf("round %d: %d tokens issued and %d events appended before the kill", round, len(jtis), len(markers))
		}
		checkAfterCrash(t, dir, origin, acked, appended, published)
	}
	// The appends were heavy enough to use the files beside the database.
	for _, name := range []string{sqlite.FileName + sqlite.SegmentsSuffix, sqlite.FileName + sqlite.TilesSuffix} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("after heavy appends: %v", err)
		}
	}
	t.Logf("%d rounds, %d acknowledged tokens, %d acknowledged appends, %d checkpoints", rounds, len(acked), len(appended), len(published))
}

func startChild(t *testing.T, dir string) (base string, kill func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), "CUSTOS_CRASH_DIR="+dir, "CUSTOS_CRASH_ADDR="+addr)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Every line the child wrote before it was killed names an
	// acknowledged append (a line cut short by the kill names none).
	var markers []string
	read := make(chan struct{})
	go func() {
		defer close(read)
		b, _ := io.ReadAll(stdout)
		lines := strings.Split(string(b), "\n")
		markers = lines[:len(lines)-1]
	}()
	base = "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/.well-known/openid-configuration")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("custos did not start: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return base, func() []string {
		cmd.Process.Signal(syscall.SIGKILL)
		<-read
		cmd.Wait()
		return markers
	}
}

// load issues client-credentials tokens from several workers for d, and
// polls the checkpoint. It returns the jti of every token answered and
// every checkpoint served.
func load(t *testing.T, base, secret string, d time.Duration) (jtis []string, cps [][]byte) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 5 * time.Second}
	var mu sync.Mutex
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(end) {
				req, _ := http.NewRequest("POST", base+"/oauth2/token", strings.NewReader("grant_type=client_credentials&scope=orders:read"))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth("svc", secret)
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				var out struct {
					AccessToken string `json:"access_token"`
				}
				err = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					continue
				}
				jti := jtiOf(t, out.AccessToken)
				mu.Lock()
				jtis = append(jtis, jti)
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		for time.Now().Before(end) {
			resp, err := client.Get(base + "/audit/checkpoint")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mu.Lock()
					cps = append(cps, b)
					mu.Unlock()
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	wg.Wait()
	return jtis, cps
}

func jtiOf(t *testing.T, tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Errorf("token %q is not a JWS", tok)
		return ""
	}
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal(b, &c); err != nil || c.JTI == "" {
		t.Errorf("token claims %s", b)
	}
	return c.JTI
}

func checkAfterCrash(t *testing.T, dir, origin string, acked, appended map[string]bool, published [][]byte) {
	t.Helper()
	n, err := node.Open(t.Context(), node.Config{DataDir: dir})
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	defer n.Close()
	logged := map[string]bool{}
	markers := map[string]bool{}
	err = n.Audit.Query(t.Context(), audit.Filter{Types: []string{"token_issued", "crash_test"}}, func(r audit.Record) error {
		if r.Event.Fields["sanitized"] != nil {
			t.Errorf("%s event %d was recorded sanitized: %v", r.Event.Type, r.Index, r.Event.Fields)
		}
		if j, ok := r.Event.Fields["access_jti"].(string); ok {
			logged[j] = true
		}
		if m, ok := r.Event.Fields["marker"].(string); ok {
			markers[m] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	missing := 0
	for j := range acked {
		if !logged[j] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged token_issued events are missing after a crash", missing, len(acked))
	}
	for m := range appended {
		if !markers[m] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged appends are missing after a crash", missing, len(appended))
	}

	signed, now := n.Log.Checkpoint()
	if _, _, err := auditlog.OpenCheckpoint(signed, n.Log.Verifier()); err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(n.AuditVerifierKey)
	if err != nil || v.Name() != origin {
		t.Fatalf("log verifier key %q: %v", n.AuditVerifierKey, err)
	}
	for _, b := range published {
		old, _, err := auditlog.OpenCheckpoint(b, v)
		if err != nil {
			t.Fatalf("a checkpoint custos served does not verify: %v", err)
		}
		p, err := n.Log.ConsistencyProof(t.Context(), old.Size, now.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := auditlog.VerifyConsistency(old, now, p); err != nil {
			t.Fatalf("checkpoint %d served before a crash is not consistent with checkpoint %d after it: %v", old.Size, now.Size, err)
		}
	}
}
