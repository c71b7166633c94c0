package witness_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/witness"
)

// cosigStore is an in-memory witness.CosignatureStore.
type cosigStore struct {
	mu       sync.Mutex
	lines    map[uint64][]byte
	progress map[string]uint64
	fail     error
}

func newCosigStore() *cosigStore {
	return &cosigStore{lines: make(map[uint64][]byte), progress: make(map[string]uint64)}
}

func (s *cosigStore) WitnessProgress(_ context.Context, w string) (store.WitnessProgress, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	size, ok := s.progress[w]
	if !ok {
		return store.WitnessProgress{}, fmt.Errorf("witness %s: %w", w, store.ErrNotFound)
	}
	return store.WitnessProgress{Witness: w, Size: size}, nil
}

func (s *cosigStore) AddCosignatures(_ context.Context, c store.Cosignatures) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.lines[c.Size] = append(s.lines[c.Size], c.Lines...)
	s.progress[c.Witness] = max(s.progress[c.Witness], c.Size)
	return nil
}

func (s *cosigStore) get(size uint64) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.lines[size])
}

func (s *cosigStore) sizes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lines)
}

// handlerTransport serves requests with a handler in memory, counting
// them, so that the submitter runs inside a synctest bubble.
type handlerTransport struct {
	h        atomic.Pointer[http.Handler]
	requests atomic.Int64
	bodies   chan string
}

func newTransport(h http.Handler) *handlerTransport {
	tr := &handlerTransport{bodies: make(chan string, 100)}
	tr.set(h)
	return tr
}

func (tr *handlerTransport) set(h http.Handler) { tr.h.Store(&h) }

func (tr *handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tr.requests.Add(1)
	body, _ := io.ReadAll(r.Body)
	select {
	case tr.bodies <- string(body):
	default:
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	(*tr.h.Load()).ServeHTTP(rec, r)
	return rec.Result(), nil
}

type submitterFixture struct {
	log   *testLog
	wit   *witnessFixture
	st    *cosigStore
	tr    *handlerTransport
	sub   *witness.Submitter
	logs  *strings.Builder
	logMu *sync.Mutex
}

func newSubmitter(t *testing.T, l *testLog, wit *witnessFixture, cfg witness.SubmitterConfig) *submitterFixture {
	t.Helper()
	f := &submitterFixture{log: l, wit: wit, st: newCosigStore(), tr: newTransport(wit.w.Handler()), logs: &strings.Builder{}, logMu: &sync.Mutex{}}
	cfg.Witnesses = []witness.Remote{{URL: "https://user:secret@witness.example/", VerifierKey: wit.w.VerifierKey()}}
	cfg.Log, cfg.Proofs = l.verifier, l
	cfg.Client = &http.Client{Transport: f.tr}
	cfg.Now = wit.clock.Now
	cfg.Logger = slog.New(slog.NewTextHandler(lockedWriter{f.logMu, f.logs}, nil))
	var err error
	if f.sub, err = witness.NewSubmitter(f.st, cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

func (f *submitterFixture) logged() string {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	return f.logs.String()
}

// run runs the submitter until the test's bubble ends it.
func (f *submitterFixture) run(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); f.sub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// checkCosigned checks that the store holds a verified cosignature of the
// witness for the log's checkpoint at size.
func (f *submitterFixture) checkCosigned(t *testing.T, size uint64) {
	t.Helper()
	lines := f.st.get(size)
	if lines == nil {
		t.Fatalf("no cosignature stored for size %d; log:\n%s", size, f.logged())
	}
	_, n, err := auditlog.OpenCheckpoint(append(f.log.signed(t, size), lines...), f.log.verifier, f.wit.self)
	if err != nil {
		t.Fatalf("stored cosignature for %d: %v", size, err)
	}
	if err := auditlog.CheckQuorum(n, 1, f.wit.self); err != nil {
		t.Fatal(err)
	}
}

func TestSubmitterCosigns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newTestLog(t, logOrigin).grow(20, "log")
		wit := newWitness(t, l)
		f := newSubmitter(t, l, wit, witness.SubmitterConfig{})
		// Checkpoints queued before the submitter runs are coalesced: only
		// the newest is sent.
		for _, size := range []uint64{3, 5, 7} {
			f.sub.Submit(l.signed(t, size), l.at(size))
		}
		f.run(t)
		synctest.Wait()
		f.checkCosigned(t, 7)
		if n := f.tr.requests.Load(); n != 1 {
			t.Fatalf("%d requests for three queued checkpoints, want 1", n)
		}
		if f.st.sizes() != 1 {
			t.Fatal("cosignatures stored for checkpoints never sent")
		}
		// The next checkpoint is sent from the size the witness cosigned,
		// with the proof from there.
		f.sub.Submit(l.signed(t, 12), l.at(12))
		synctest.Wait()
		f.checkCosigned(t, 12)
		if held, _ := wit.st.WitnessLog(t.Context(), logOrigin); held.Size != 12 {
			t.Fatalf("witness holds %d", held.Size)
		}
		// An older or equal checkpoint is not sent again.
		f.sub.Submit(l.signed(t, 12), l.at(12))
		f.sub.Submit(l.signed(t, 9), l.at(9))
		synctest.Wait()
		if n := f.tr.requests.Load(); n != 2 {
			t.Fatalf("%d requests, want 2", n)
		}
	})
}

// A witness that holds another size answers 409; the submitter retries
// once from that size.
func TestSubmitterConflictRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newTestLog(t, logOrigin).grow(20, "log")
		wit := newWitness(t, l)
		wit.cosign(t, l, 0, 6) // e.g. the log's record of it was lost
		f := newSubmitter(t, l, wit, witness.SubmitterConfig{})
		f.sub.Submit(l.signed(t, 10), l.at(10))
		f.run(t)
		synctest.Wait()
		f.checkCosigned(t, 10)
		if n := f.tr.requests.Load(); n != 2 {
			t.Fatalf("%d requests, want 2 (old 0, then old 6)", n)
		}
		<-f.tr.bodies
		if b := <-f.tr.bodies; !strings.HasPrefix(b, "old 6\n") {
			t.Fatalf("retry body starts %q", b[:10])
		}
		// The witness already holds exactly the log's checkpoint: the
		// retry from that size gets it cosigned again.
		wit2 := newWitness(t, l)
		wit2.cosign(t, l, 0, 10)
		f2 := newSubmitter(t, l, wit2, witness.SubmitterConfig{})
		f2.sub.Submit(l.signed(t, 10), l.at(10))
		f2.run(t)
		synctest.Wait()
		f2.checkCosigned(t, 10)
	})
}

// Failures are retried with a doubling, jittered, bounded wait, logged
// without the URL's credentials, and nothing unverified is stored.
func TestSubmitterBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newTestLog(t, logOrigin).grow(20, "log")
		wit := newWitness(t, l)
		f := newSubmitter(t, l, wit, witness.SubmitterConfig{MinBackoff: time.Second, MaxBackoff: 8 * time.Second})
		f.tr.set(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		}))
		f.sub.Submit(l.signed(t, 10), l.at(10))
		f.run(t)
		time.Sleep(60 * time.Second)
		synctest.Wait()
		// Waits of [0.5,1], [1,2], [2,4], then [4,8] seconds: in a minute,
		// between 1+9 and 1+17 attempts.
		if n := f.tr.requests.Load(); n < 10 || n > 18 {
			t.Fatalf("%d attempts in a minute", n)
		}
		if f.st.sizes() != 0 {
			t.Fatal("stored a cosignature from a failing witness")
		}
		logs := f.logged()
		if !strings.Contains(logs, "503") || !strings.Contains(logs, "down for maintenance") {
			t.Fatalf("failures not logged:\n%s", logs)
		}
		if strings.Contains(logs, "secret") {
			t.Fatalf("the URL's password was logged:\n%s", logs)
		}
		// The witness comes back: within the longest wait, it cosigns.
		f.tr.set(wit.w.Handler())
		time.Sleep(8 * time.Second)
		synctest.Wait()
		f.checkCosigned(t, 10)
	})
}

// A response whose cosignature does not verify with the witness's key is
// not stored.
func TestSubmitterRefusesBadCosignatures(t *testing.T) {
	l := newTestLog(t, logOrigin).grow(20, "log")
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	// Another key under the witness's name: same name, other key ID, so
	// the line is ignored and no cosignature from the witness remains.
	impostor, err := auditlog.NewCosigner(witnessName, otherKey, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		resp func(wit *witnessFixture, good string) string
		want string
	}{
		{"empty", func(*witnessFixture, string) string { return "" }, "not signature lines"},
		{"not a signature line", func(*witnessFixture, string) string { return "hello\n" }, "not signature lines"},
		{"another key's cosignature", func(_ *witnessFixture, _ string) string {
			n, err := impostor.Sign(l.at(10).Marshal())
			if err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("— %s %s\n", witnessName, b64(append(keyID(impostor.KeyHash()), n...)))
		}, "no cosignature from its key"},
		{"altered cosignature", func(_ *witnessFixture, good string) string {
			return string(alterLastSignature(t, []byte("x\n\n"+good))[3:])
		}, "does not verify"},
		{"cosignature of another checkpoint", func(wit *witnessFixture, _ string) string {
			c, err := auditlog.NewCosigner(witnessName, wit.key, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := c.Sign(l.at(9).Marshal())
			if err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("— %s %s\n", witnessName, b64(append(keyID(c.KeyHash()), sig...)))
		}, "does not verify"},
		{"dated in the future", func(wit *witnessFixture, _ string) string {
			c, err := auditlog.NewCosigner(witnessName, wit.key, func() time.Time { return wit.clock.Now().Add(time.Hour) })
			if err != nil {
				t.Fatal(err)
			}
			sig, err := c.Sign(l.at(10).Marshal())
			if err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("— %s %s\n", witnessName, b64(append(keyID(c.KeyHash()), sig...)))
		}, "in the future"},
		{"409 without a size", func(*witnessFixture, string) string { return "409" }, "not a tree size"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				wit := newWitness(t, l)
				f := newSubmitter(t, l, wit, witness.SubmitterConfig{})
				f.tr.set(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					rec := httptest.NewRecorder()
					wit.w.Handler().ServeHTTP(rec, r)
					resp := tc.resp(wit, rec.Body.String())
					if resp == "409" {
						w.Header().Set("Content-Type", witness.ContentTypeSize)
						w.WriteHeader(http.StatusConflict)
						io.WriteString(w, "five\n")
						return
					}
					io.WriteString(w, resp)
				}))
				f.sub.Submit(l.signed(t, 10), l.at(10))
				f.run(t)
				synctest.Wait()
				if f.st.sizes() != 0 {
					t.Fatalf("stored %q", f.st.get(10))
				}
				if logs := f.logged(); !strings.Contains(logs, tc.want) {
					t.Fatalf("log does not say %q:\n%s", tc.want, logs)
				}
			})
		})
	}
}

func TestNewSubmitter(t *testing.T) {
	l := newTestLog(t, logOrigin)
	wit := newWitness(t, l)
	vk := wit.w.VerifierKey()
	logVKey := "log.example/audit+01234567+AXXX"
	tests := []struct {
		name string
		ws   []witness.Remote
		ok   bool
	}{
		{"none", nil, true},
		{"one", []witness.Remote{{URL: "https://w.example/w1", VerifierKey: vk}}, true},
		{"http", []witness.Remote{{URL: "http://127.0.0.1:8090", VerifierKey: vk}}, true},
		{"twice", []witness.Remote{{URL: "https://a.example", VerifierKey: vk}, {URL: "https://b.example", VerifierKey: vk}}, false},
		{"bad key", []witness.Remote{{URL: "https://w.example", VerifierKey: "nope"}}, false},
		{"log key, not a cosignature key", []witness.Remote{{URL: "https://w.example", VerifierKey: logVKey}}, false},
		{"ftp", []witness.Remote{{URL: "ftp://w.example", VerifierKey: vk}}, false},
		{"relative", []witness.Remote{{URL: "/w1", VerifierKey: vk}}, false},
		{"query", []witness.Remote{{URL: "https://w.example/?a=b", VerifierKey: vk}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := witness.NewSubmitter(newCosigStore(), witness.SubmitterConfig{Witnesses: tc.ws, Log: l.verifier, Proofs: l})
			if (err == nil) != tc.ok {
				t.Fatalf("NewSubmitter: %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if _, err := witness.NewSubmitter(newCosigStore(), witness.SubmitterConfig{Log: l.verifier}); err == nil {
		t.Fatal("NewSubmitter without proofs succeeded")
	}
	_, err := witness.NewSubmitter(newCosigStore(), witness.SubmitterConfig{Log: l.verifier, Proofs: l,
		Witnesses: []witness.Remote{{URL: "https://user:hunter2@w.example/?x=1", VerifierKey: vk}}})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error for a URL with a password: %v", err)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func keyID(h uint32) []byte { return []byte{byte(h >> 24), byte(h >> 16), byte(h >> 8), byte(h)} }
