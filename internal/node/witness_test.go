package node_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/keys"
	"github.com/custos-dev/custos/internal/node"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/store/sqlite"
	"github.com/custos-dev/custos/internal/tlog"
	"github.com/custos-dev/custos/internal/witness"
)

// A node configured with a witness gets its checkpoints cosigned and keeps
// the cosignatures with them; a fork signed with the log's own key is
// refused by the witness.
func TestWitnessEndToEnd(t *testing.T) {
	const witnessName = "witness.test/w1"
	ctx := t.Context()

	// The witness's address and key exist before the node, so the node can
	// be configured with them; it serves once it knows the log's key.
	wln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	witnessURL := "http://" + wln.Addr().String()
	_, wkey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wvkey := auditlog.CosignatureVerifierKey(witnessName, wkey.Public().(ed25519.PublicKey))
	wv, err := auditlog.NewCosignatureVerifier(wvkey)
	if err != nil {
		t.Fatal(err)
	}

	n, _ := startNode(t, func(c *node.Config) {
		c.Witnesses = []witness.Remote{{URL: witnessURL, VerifierKey: wvkey}}
		c.AuditLog.CheckpointInterval = 20 * time.Millisecond
	})
	logV, err := note.NewVerifier(n.AuditVerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	origin := n.Log.Origin()

	wst, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wst.Close() })
	w, err := witness.New(wst, wkey, witness.Config{Name: witnessName, Logs: []witness.Log{{Verifier: logV}}})
	if err != nil {
		t.Fatal(err)
	}
	if w.VerifierKey() != wvkey {
		t.Fatalf("witness verifier key %q, want %q", w.VerifierKey(), wvkey)
	}
	srv := &http.Server{Handler: w.Handler()}
	go srv.Serve(wln)
	t.Cleanup(func() { srv.Close() })

	// Events are appended; the witness cosigns the checkpoint that covers
	// them, and the node keeps the cosignature with that checkpoint.
	var last uint64
	for i := range 20 {
		idx, err := n.Audit.Append(ctx, event.Event{Class: event.ClassAdmin, Type: "witness_test", Actor: "test", Fields: map[string]any{"i": i}})
		if err != nil {
			t.Fatal(err)
		}
		last = idx
	}
	size := waitCosigned(t, n, wvkey, last+1)

	cps, err := n.Store.Checkpoints(ctx, size-1, 1)
	if err != nil || len(cps) != 1 || cps[0].Size != size {
		t.Fatalf("stored checkpoint of size %d: %+v, %v", size, cps, err)
	}
	cp, cosigned, err := auditlog.OpenCheckpoint(cps[0].Note, logV, wv)
	if err != nil {
		t.Fatalf("stored checkpoint note does not open with the log and witness keys: %v\n%s", err, cps[0].Note)
	}
	if err := auditlog.CheckQuorum(cosigned, 1, wv); err != nil {
		t.Fatalf("stored checkpoint lacks the witness's cosignature: %v\n%s", err, cps[0].Note)
	}
	if cp.Origin != origin || cp.Size != size {
		t.Fatalf("checkpoint %+v", cp)
	}
	// The witness holds the same checkpoint, with the same cosignature.
	held, err := w.Latest(ctx, origin)
	if err != nil {
		t.Fatal(err)
	}
	hcp, hn, err := auditlog.OpenCheckpoint(held, logV, wv)
	if err != nil || auditlog.CheckQuorum(hn, 1, wv) != nil {
		t.Fatalf("witness's checkpoint does not open: %v\n%s", err, held)
	}
	if hcp.Size < size {
		t.Fatalf("witness holds size %d, below %d", hcp.Size, size)
	}

	// A fork: a second log over another store, signed with the node's own
	// log key (taken from its custody, as an insider could), whose entries
	// differ from the real log's.
	sealer, err := keys.OpenFileSealer(filepath.Join(n.Config().DataDir, node.RootKeyFile), false)
	if err != nil {
		t.Fatal(err)
	}
	nk, err := keys.OpenNoteKey(ctx, n.Store, sealer, event.SinkFunc(func(context.Context, event.Event) error {
		return errors.New("the log key should exist already")
	}), origin, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	forkSigner, err := auditlog.NewNoteSigner(origin, nk.Signer())
	if err != nil {
		t.Fatal(err)
	}
	fst, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fst.Close() })
	fork, err := tlog.Open(ctx, fst, tlog.Config{Origin: origin, Key: forkSigner, Verifier: logV, CheckpointInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fork.Close() })

	heldSize := func() uint64 {
		t.Helper()
		rec, err := wst.WitnessLog(ctx, origin)
		if err != nil {
			t.Fatal(err)
		}
		return rec.Size
	}
	// Grow the fork to the witness's size: same size, another root.
	wsize := heldSize()
	forkTo(t, fork, wsize)
	forkSame, forkCP := fork.Checkpoint()
	if forkCP.Size != wsize {
		t.Fatalf("fork at %d, want %d", forkCP.Size, wsize)
	}
	if _, _, err := auditlog.OpenCheckpoint(forkSame, logV); err != nil {
		t.Fatalf("the fork's checkpoint is not signed by the log key: %v", err)
	}
	before, err := w.Latest(ctx, origin)
	if err != nil {
		t.Fatal(err)
	}
	code, body := postWitness(t, witnessURL, witness.Request{OldSize: wsize, Checkpoint: forkSame})
	if code != http.StatusConflict || body != fmt.Sprintf("%d\n", wsize) {
		t.Fatalf("fork at the same size: %d %q, want 409 %d", code, body, wsize)
	}
	// Grow the fork past it: its own consistency proof does not reach
	// the root the witness holds.
	forkTo(t, fork, wsize+5)
	forkLarger, _ := fork.Checkpoint()
	proof, err := fork.ConsistencyProof(ctx, wsize, wsize+5)
	if err != nil {
		t.Fatal(err)
	}
	code, body = postWitness(t, witnessURL, witness.Request{OldSize: wsize, Proof: proof, Checkpoint: forkLarger})
	if code != http.StatusUnprocessableEntity {
		t.Fatalf("larger fork: %d %q, want 422", code, body)
	}
	code, body = postWitness(t, witnessURL, witness.Request{OldSize: 0, Checkpoint: forkLarger})
	if code != http.StatusConflict || body != fmt.Sprintf("%d\n", wsize) {
		t.Fatalf("larger fork from zero: %d %q, want 409 %d", code, body, wsize)
	}
	after, err := w.Latest(ctx, origin)
	if err != nil {
		t.Fatal(err)
	}
	if heldSize() == wsize && !bytes.Equal(after, before) {
		t.Fatal("refused forks changed the witness's checkpoint")
	}
	// Whatever the witness holds now is still the real log's tree.
	acp, _, err := auditlog.OpenCheckpoint(after, logV, wv)
	if err != nil {
		t.Fatal(err)
	}
	root, err := tlog.RootAt(ctx, n.Store, acp.Size)
	if err != nil || root != acp.Hash {
		t.Fatalf("witness holds a root that is not the log's at size %d: %v", acp.Size, err)
	}
}

// waitCosigned waits until the witness has cosigned a checkpoint of at
// least size entries and the node has stored that cosignature, and
// returns the cosigned size.
func waitCosigned(t *testing.T, n *node.Node, wvkey string, size uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		p, err := n.Store.WitnessProgress(t.Context(), wvkey)
		if err == nil && p.Size >= size {
			return p.Size
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			_, cp := n.Log.Checkpoint()
			t.Fatalf("no cosignature for size %d after 15s (log at %d, witness progress %+v, %v)", size, cp.Size, p, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// forkTo appends entries to the fork until it has size entries and a
// checkpoint of that size.
func forkTo(t *testing.T, fork *tlog.Log, size uint64) {
	t.Helper()
	_, cp := fork.Checkpoint()
	for i := cp.Size; i < size; i++ {
		if _, err := fork.Append(t.Context(), fmt.Appendf(nil, "forged entry %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, cp := fork.Checkpoint(); cp.Size == size {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fork has no checkpoint of size %d", size)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func postWitness(t *testing.T, base string, r witness.Request) (int, string) {
	t.Helper()
	res, err := http.Post(base+"/add-checkpoint", "text/plain", bytes.NewReader(r.Marshal()))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}
