package interop_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"
)

var hasher = rfc6962.DefaultHasher

// checkpoint is one checkpoint the peer saw and proved consistent.
type checkpoint struct {
	size uint64
	hash []byte
	raw  []byte
}

// TestTesseraReadsCustosLog runs `custos serve` and reads its audit log as
// a peer would: only through the public tlog-tiles endpoints, with
// tessera's client, trusting nothing but the log key serve prints.
func TestTesseraReadsCustosLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	bin := buildCustos(t, tmp)
	data := filepath.Join(tmp, "data")

	// A confidential client, registered before serve starts (the CLI opens
	// the data directory itself); every token it gets is a token_issued
	// event in the audit log.
	out := run(t, bin, "clients", "add", "--data", data, "--id", "peer-test",
		"--scope", "orders:read", "--grant", "client_credentials", "--json")
	var reg struct {
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal(out, &reg); err != nil || reg.Secret == "" {
		t.Fatalf("clients add --json: %v\n%s", err, out)
	}

	srv := startServe(t, bin, data)
	t.Logf("custos serves %s; audit log key %s", srv.base, srv.vkey)
	v, err := note.NewVerifier(srv.vkey)
	if err != nil {
		t.Fatalf("serve printed a bad audit log key %q: %v", srv.vkey, err)
	}
	origin := v.Name()

	logURL, _ := url.Parse(srv.base + "/audit/")
	f, err := client.NewHTTPFetcher(logURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	// `clients add` logged events and closed with a checkpoint, so the
	// log is not empty.
	first := waitCheckpoint(ctx, t, f, v, origin, 1)
	lst, err := client.NewLogStateTracker(ctx, f.ReadTile, first.raw, v, origin, client.UnilateralConsensus(f.ReadCheckpoint))
	if err != nil {
		t.Fatalf("NewLogStateTracker: %v", err)
	}
	seen := []checkpoint{first}

	// Grow the log in rounds whose sizes cross tile boundaries, and let
	// tessera prove each new checkpoint consistent with the last.
	for _, k := range []int{1, 3, 60, 200, 256, 300, 250} {
		want := seen[len(seen)-1].size + uint64(k)
		issueTokens(ctx, t, srv.base, "peer-test", reg.Secret, k)
		waitCheckpoint(ctx, t, f, v, origin, want)
		oldRaw, p, newRaw, err := lst.Update(ctx)
		if err != nil {
			t.Fatalf("tessera LogStateTracker.Update after %d tokens: %v", k, err)
		}
		l := lst.Latest()
		cur := checkpoint{l.Size, l.Hash, newRaw}
		prev := seen[len(seen)-1]
		if !bytes.Equal(oldRaw, prev.raw) || !bytes.Equal(newRaw, cur.raw) || cur.size < want {
			t.Fatalf("Update moved from %q to size %d, want from the last checkpoint to ≥ %d", oldRaw, cur.size, want)
		}
		if len(p) == 0 {
			t.Fatalf("Update from %d to %d returned no consistency proof", prev.size, cur.size)
		}
		// The tracker verified the proof; check it independently too.
		if err := proof.VerifyConsistency(hasher, prev.size, cur.size, p, prev.hash, cur.hash); err != nil {
			t.Fatalf("consistency %d → %d: %v", prev.size, cur.size, err)
		}
		seen = append(seen, cur)
	}
	final := seen[len(seen)-1]
	t.Logf("followed %d checkpoints, sizes %v", len(seen), sizes(seen))
	if final.size < 1000 {
		t.Fatalf("the log holds %d entries, want ≥ 1000 (several full tiles)", final.size)
	}

	pb, err := client.NewProofBuilder(ctx, final.size, f.ReadTile)
	if err != nil {
		t.Fatal(err)
	}

	// Consistency proofs between every pair of checkpoints seen, built by
	// tessera from the tiles of the final tree.
	for i := range seen {
		for j := i + 1; j < len(seen); j++ {
			a, b := seen[i], seen[j]
			p, err := pb.ConsistencyProof(ctx, a.size, b.size)
			if err != nil {
				t.Fatalf("ConsistencyProof(%d, %d): %v", a.size, b.size, err)
			}
			if err := proof.VerifyConsistency(hasher, a.size, b.size, p, a.hash, b.hash); err != nil {
				t.Fatalf("consistency %d → %d: %v", a.size, b.size, err)
			}
		}
	}

	// Inclusion of events, with the leaf hash computed from the event
	// bytes: entry bundles are not served (they hold personal data), so
	// the bytes come from `custos audit prove`, whose proof file carries
	// the entry in its extra line. Only the entry is taken from the file;
	// the proof is tessera's, from the tiles.
	idx := []uint64{0, 1, 2, 255, 256, 257, 511, 512, final.size / 2, final.size - 257, final.size - 2, final.size - 1}
	for _, i := range idx {
		entry, proveKey := proveEntry(t, bin, data, tmp, i)
		if proveKey != srv.vkey {
			t.Fatalf("audit prove names log key %q, serve printed %q", proveKey, srv.vkey)
		}
		if !json.Valid(entry) {
			t.Fatalf("entry %d is not a JSON event: %q", i, entry)
		}
		ip, err := pb.InclusionProof(ctx, i)
		if err != nil {
			t.Fatalf("InclusionProof(%d): %v", i, err)
		}
		if err := proof.VerifyInclusion(hasher, i, final.size, hasher.HashLeaf(entry), ip, final.hash); err != nil {
			t.Fatalf("inclusion of entry %d (%s) in %d: %v", i, entry, final.size, err)
		}
		// And against an earlier checkpoint that holds it.
		for _, c := range seen {
			if c.size > i {
				pb2, _ := client.NewProofBuilder(ctx, c.size, f.ReadTile)
				ip, err := pb2.InclusionProof(ctx, i)
				if err != nil {
					t.Fatalf("InclusionProof(%d) at %d: %v", i, c.size, err)
				}
				if err := proof.VerifyInclusion(hasher, i, c.size, hasher.HashLeaf(entry), ip, c.hash); err != nil {
					t.Fatalf("inclusion of entry %d in %d: %v", i, c.size, err)
				}
				break
			}
		}
		// A different entry must not verify (the check can fail).
		if err := proof.VerifyInclusion(hasher, i, final.size, hasher.HashLeaf(append(entry, ' ')), ip, final.hash); err == nil {
			t.Fatalf("inclusion of a modified entry %d verified", i)
		}
	}

	// Every index, with the leaf hashes from the level-0 tiles: this does
	// not authenticate the leaves themselves (above, the entries do), but
	// checks that every higher tile and partial tile agrees with them and
	// with the signed root.
	leaves, err := client.FetchLeafHashes(ctx, f.ReadTile, 0, final.size, final.size)
	if err != nil {
		t.Fatalf("FetchLeafHashes: %v", err)
	}
	if uint64(len(leaves)) != final.size {
		t.Fatalf("FetchLeafHashes returned %d hashes, want %d", len(leaves), final.size)
	}
	for i := range final.size {
		ip, err := pb.InclusionProof(ctx, i)
		if err != nil {
			t.Fatalf("InclusionProof(%d): %v", i, err)
		}
		if err := proof.VerifyInclusion(hasher, i, final.size, leaves[i], ip, final.hash); err != nil {
			t.Fatalf("inclusion of leaf %d: %v", i, err)
		}
	}
	t.Logf("verified %d inclusion proofs (%d from entry bytes) and %d consistency proofs at size %d",
		final.size, len(idx), len(seen)*(len(seen)-1)/2+len(seen)-1, final.size)

	t.Run("tampered tiles", func(t *testing.T) {
		// A proxy that serves custos's log with one byte of every hash in
		// every tile changed; checkpoints pass through untouched.
		proxy := tamperProxy(t, srv.base, func(path string, body []byte) []byte {
			if !strings.HasPrefix(path, "/audit/tile/") {
				return body
			}
			for i := 0; i < len(body); i += 32 {
				body[i] ^= 0x01
			}
			return body
		})
		pu, _ := url.Parse(proxy.URL + "/audit/")
		bad, err := client.NewHTTPFetcher(pu, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Control: the same catch-up from the first checkpoint through
		// the honest endpoints succeeds.
		good, err := client.NewLogStateTracker(ctx, f.ReadTile, seen[0].raw, v, origin, client.UnilateralConsensus(f.ReadCheckpoint))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := good.Update(ctx); err != nil {
			t.Fatalf("honest catch-up from %d: %v", seen[0].size, err)
		}
		tracker, err := client.NewLogStateTracker(ctx, bad.ReadTile, seen[0].raw, v, origin, client.UnilateralConsensus(bad.ReadCheckpoint))
		if err != nil {
			t.Fatal(err)
		}
		_, _, _, err = tracker.Update(ctx)
		var inc client.ErrInconsistency
		if !errors.As(err, &inc) {
			t.Fatalf("Update through tampered tiles: got %v, want client.ErrInconsistency", err)
		}
		t.Logf("tessera refused the tampered tiles: %v", err)
		if got := tracker.Latest().Size; got != seen[0].size {
			t.Fatalf("the tracker moved to %d on a failed update", got)
		}
		// Inclusion through the tampered tiles fails too.
		pb, _ := client.NewProofBuilder(ctx, final.size, bad.ReadTile)
		entry, _ := proveEntry(t, bin, data, tmp, 1)
		ip, err := pb.InclusionProof(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyInclusion(hasher, 1, final.size, hasher.HashLeaf(entry), ip, final.hash); err == nil {
			t.Fatal("inclusion verified through tampered tiles")
		}
	})

	t.Run("tampered checkpoint", func(t *testing.T) {
		// Changing the root in the checkpoint breaks its signature.
		proxy := tamperProxy(t, srv.base, func(path string, body []byte) []byte {
			if path != "/audit/checkpoint" {
				return body
			}
			lines := bytes.SplitN(body, []byte("\n"), 4)
			root, _ := base64.StdEncoding.DecodeString(string(lines[2]))
			root[0] ^= 0x01
			lines[2] = []byte(base64.StdEncoding.EncodeToString(root))
			return bytes.Join(lines, []byte("\n"))
		})
		pu, _ := url.Parse(proxy.URL + "/audit/")
		bad, _ := client.NewHTTPFetcher(pu, nil)
		tracker, err := client.NewLogStateTracker(ctx, bad.ReadTile, seen[0].raw, v, origin, client.UnilateralConsensus(bad.ReadCheckpoint))
		if err != nil {
			t.Fatal(err)
		}
		_, _, _, err = tracker.Update(ctx)
		if err == nil || !strings.Contains(err.Error(), "parse Checkpoint") {
			t.Fatalf("Update with a changed root: got %v, want a checkpoint signature failure", err)
		}
		t.Logf("tessera refused the altered checkpoint: %v", err)
	})
}

// buildCustos builds the custos binary from the main module, two
// directories up, into dir.
func buildCustos(t *testing.T, dir string) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.HasPrefix(mod, []byte("module github.com/custos-dev/custos\n")) {
		t.Fatalf("%s is not custos's module root: %v", root, err)
	}
	bin := filepath.Join(dir, "custos")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/custos-dev/custos/cmd/custos")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// run runs a custos command and returns its standard output.
func run(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("custos %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

type server struct {
	base, vkey string
}

// startServe starts `custos serve` on a free port and reads where it
// serves and its audit log key from what it prints.
func startServe(t *testing.T, bin, data string) server {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--data", data, "--addr", "127.0.0.1:0")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("custos serve exited with %v\n%s", err, stderr.String())
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Errorf("custos serve did not stop on SIGTERM\n%s", stderr.String())
		}
	})
	found := make(chan server, 1)
	go func() {
		var s server
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "custos is serving "); ok {
				s.base, _, _ = strings.Cut(rest, " ")
			}
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "audit log key"); ok {
				s.vkey = strings.TrimSpace(rest)
				found <- s
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case s := <-found:
		if s.base == "" || s.vkey == "" {
			t.Fatalf("could not read the address and audit log key from serve's output")
		}
		// Serve prints before it accepts; wait until it answers.
		for i := 0; ; i++ {
			resp, err := http.Get(s.base + "/.well-known/openid-configuration")
			if err == nil {
				resp.Body.Close()
				break
			}
			if i == 100 {
				t.Fatalf("custos serve does not answer: %v\n%s", err, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		return s
	case <-time.After(60 * time.Second):
		t.Fatalf("custos serve printed no audit log key\n%s", stderr.String())
	}
	panic("unreachable")
}

// issueTokens makes n client_credentials token requests, 8 at a time.
func issueTokens(ctx context.Context, t *testing.T, base, id, secret string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errc := make(chan error, n)
	sem := make(chan struct{}, 8)
	for range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			form := url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:read"}}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/oauth2/token", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(id, secret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errc <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errc <- fmt.Errorf("token endpoint: %s: %s", resp.Status, body)
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

// waitCheckpoint polls the checkpoint until it covers at least size
// entries, verifying each one it reads.
func waitCheckpoint(ctx context.Context, t *testing.T, f *client.HTTPFetcher, v note.Verifier, origin string, size uint64) checkpoint {
	t.Helper()
	for {
		cp, raw, _, err := client.FetchCheckpoint(ctx, f.ReadCheckpoint, v, origin)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("checkpoint: %v", err)
		}
		if err == nil && cp.Size >= size {
			return checkpoint{cp.Size, cp.Hash, raw}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no checkpoint of size ≥ %d: %v", size, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// proveEntry runs `custos audit prove --index i` and returns the entry from
// the proof's extra line and the log key the command names.
func proveEntry(t *testing.T, bin, data, dir string, i uint64) ([]byte, string) {
	t.Helper()
	file := filepath.Join(dir, "proof-"+strconv.FormatUint(i, 10))
	out := run(t, bin, "audit", "prove", "--data", data, "--index", strconv.FormatUint(i, 10), "--out", file, "--json")
	var res struct {
		LogKey string `json:"log_key"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("audit prove --json: %v\n%s", err, out)
	}
	p, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// c2sp.org/tlog-proof@v1: header, "extra BASE64", "index N", ...
	lines := strings.Split(string(p), "\n")
	if len(lines) < 3 || lines[0] != "c2sp.org/tlog-proof@v1" {
		t.Fatalf("%s is not a tlog-proof:\n%s", file, p)
	}
	b64, ok := strings.CutPrefix(lines[1], "extra ")
	if !ok || lines[2] != "index "+strconv.FormatUint(i, 10) {
		t.Fatalf("%s: want an extra line and index %d:\n%s", file, i, p)
	}
	entry, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("%s: extra: %v", file, err)
	}
	return entry, res.LogKey
}

// tamperProxy serves base's responses, changed by edit.
func tamperProxy(t *testing.T, base string, edit func(path string, body []byte) []byte) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(base + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if resp.StatusCode == http.StatusOK {
			body = edit(r.URL.Path, body)
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func sizes(cps []checkpoint) []uint64 {
	s := make([]uint64, len(cps))
	for i, c := range cps {
		s[i] = c.size
	}
	return s
}

// syncBuffer is a bytes.Buffer safe for a process to write while the test
// reads it.
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
