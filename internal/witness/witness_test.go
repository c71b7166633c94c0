package witness_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/witness"
)

// post sends body to the witness's handler.
func post(t testing.TB, w *witness.Witness, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	w.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/add-checkpoint", bytes.NewReader(body)))
	return rec
}

// cosign has the witness cosign the log's checkpoint at size, from the
// size it holds.
func (f *witnessFixture) cosign(t testing.TB, l *testLog, older, newer uint64) {
	t.Helper()
	if rec := post(t, f.w, l.request(t, older, newer).Marshal()); rec.Code != http.StatusOK {
		t.Fatalf("cosigning %d→%d: %d %s", older, newer, rec.Code, rec.Body)
	}
}

// held returns the witness's record of the log, or a zero record.
func (f *witnessFixture) held(t testing.TB, origin string) store.WitnessLog {
	t.Helper()
	rec, err := f.st.WitnessLog(t.Context(), origin)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return rec
}

func TestAddCheckpoint(t *testing.T) {
	// The log has 12 entries; the witness has cosigned it at size 5.
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	// fork has the log's key and its first 3 entries, then others.
	fork := newTestLogWithKey(t, logOrigin, key).grow(3, "log").grow(9, "fork")
	otherLog := newTestLog(t, "other.example/log").grow(4, "other")
	_, impostorKey, _ := ed25519.GenerateKey(rand.Reader)
	impostor := newTestLogWithKey(t, logOrigin, impostorKey).grow(12, "log")
	unrelatedSigner, err := auditlog.NewNoteSigner("unrelated.example/key", impostorKey)
	if err != nil {
		t.Fatal(err)
	}
	_, otherWitnessKey, _ := ed25519.GenerateKey(rand.Reader)
	otherWitness, err := auditlog.NewCosigner("witness.example/w2", otherWitnessKey, time.Now)
	if err != nil {
		t.Fatal(err)
	}

	type want struct {
		code int
		body string // exact body for 409, a substring otherwise
		size uint64 // the witness's size afterwards
	}
	tests := []struct {
		name string
		body func(l *testLog) []byte
		want want
	}{
		{"extends the held checkpoint", func(l *testLog) []byte { return l.request(t, 5, 8).Marshal() }, want{200, "— " + witnessName + " ", 8}},
		{"to the full tree", func(l *testLog) []byte { return l.request(t, 5, 12).Marshal() }, want{200, "", 12}},
		{"the held checkpoint again", func(l *testLog) []byte { return l.request(t, 5, 5).Marshal() }, want{200, "", 5}},
		{"with other signatures", func(l *testLog) []byte {
			return witness.Request{OldSize: 5, Proof: l.proof(t, 5, 9), Checkpoint: l.signed(t, 9, otherWitness, unrelatedSigner)}.Marshal()
		}, want{200, "", 9}},

		{"unknown log", func(*testLog) []byte { return otherLog.request(t, 0, 4).Marshal() }, want{404, "unknown log", 5}},
		{"signed by another key of the same name", func(*testLog) []byte { return impostor.request(t, 5, 8).Marshal() }, want{403, "", 5}},
		{"signed only by an unrelated key", func(l *testLog) []byte {
			cp, err := note.Sign(&note.Note{Text: string(l.at(8).Marshal())}, unrelatedSigner)
			if err != nil {
				t.Fatal(err)
			}
			return witness.Request{OldSize: 5, Proof: l.proof(t, 5, 8), Checkpoint: cp}.Marshal()
		}, want{403, "", 5}},
		{"log signature altered", func(l *testLog) []byte {
			r := l.request(t, 5, 8)
			r.Checkpoint = alterLastSignature(t, r.Checkpoint)
			return r.Marshal()
		}, want{403, "", 5}},
		{"checkpoint text altered", func(l *testLog) []byte {
			r := l.request(t, 5, 8)
			r.Checkpoint = bytes.Replace(r.Checkpoint, []byte("\n8\n"), []byte("\n9\n"), 1)
			return r.Marshal()
		}, want{403, "", 5}},

		{"old size above the checkpoint size", func(l *testLog) []byte {
			return witness.Request{OldSize: 5, Checkpoint: l.signed(t, 4)}.Marshal()
		}, want{400, "old size", 5}},
		{"going back to an older size", func(l *testLog) []byte { return l.request(t, 3, 3).Marshal() }, want{409, "5\n", 5}},
		{"going back with a proof", func(l *testLog) []byte { return l.request(t, 3, 4).Marshal() }, want{409, "5\n", 5}},
		{"old size zero", func(l *testLog) []byte { return l.request(t, 0, 8).Marshal() }, want{409, "5\n", 5}},
		{"old size ahead", func(l *testLog) []byte { return l.request(t, 6, 8).Marshal() }, want{409, "5\n", 5}},
		{"fork at the same size", func(*testLog) []byte { return fork.request(t, 5, 5).Marshal() }, want{409, "5\n", 5}},
		{"fork at a larger size", func(*testLog) []byte { return fork.request(t, 5, 8).Marshal() }, want{422, "", 5}},

		{"proof altered", func(l *testLog) []byte {
			r := l.request(t, 5, 8)
			r.Proof[0][0] ^= 1
			return r.Marshal()
		}, want{422, "", 5}},
		{"proof missing", func(l *testLog) []byte {
			return witness.Request{OldSize: 5, Checkpoint: l.signed(t, 8)}.Marshal()
		}, want{422, "", 5}},
		{"proof for other sizes", func(l *testLog) []byte {
			return witness.Request{OldSize: 5, Proof: l.proof(t, 4, 8), Checkpoint: l.signed(t, 8)}.Marshal()
		}, want{422, "", 5}},
		{"proof with an extra hash", func(l *testLog) []byte {
			r := l.request(t, 5, 8)
			r.Proof = append(r.Proof, r.Proof[0])
			return r.Marshal()
		}, want{422, "", 5}},
		{"same size with a proof", func(l *testLog) []byte {
			return witness.Request{OldSize: 5, Proof: l.proof(t, 4, 5), Checkpoint: l.signed(t, 5)}.Marshal()
		}, want{422, "", 5}},

		{"empty body", func(*testLog) []byte { return nil }, want{400, "", 5}},
		{"no old line", func(l *testLog) []byte { return append([]byte("\n"), l.signed(t, 8)...) }, want{400, "", 5}},
		{"old size with a leading zero", func(l *testLog) []byte {
			return append([]byte("old 05\n\n"), l.signed(t, 5)...)
		}, want{400, "", 5}},
		{"old size negative", func(l *testLog) []byte { return append([]byte("old -5\n\n"), l.signed(t, 5)...) }, want{400, "", 5}},
		{"old size with two spaces", func(l *testLog) []byte { return append([]byte("old  5\n\n"), l.signed(t, 5)...) }, want{400, "", 5}},
		{"no empty line", func(*testLog) []byte { return []byte("old 5\n") }, want{400, "", 5}},
		{"no checkpoint", func(*testLog) []byte { return []byte("old 5\n\n") }, want{400, "", 5}},
		{"proof line not base64", func(l *testLog) []byte {
			return append([]byte("old 5\nnot a hash\n\n"), l.signed(t, 8)...)
		}, want{400, "", 5}},
		{"proof line of 31 bytes", func(l *testLog) []byte {
			return append([]byte("old 5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n\n"), l.signed(t, 8)...)
		}, want{400, "", 5}},
		{"64 proof lines", func(l *testLog) []byte {
			r := l.request(t, 5, 8)
			for len(r.Proof) < 64 {
				r.Proof = append(r.Proof, r.Proof[0])
			}
			return r.Marshal()
		}, want{400, "more than 63", 5}},
		{"checkpoint without signatures", func(l *testLog) []byte {
			return witness.Request{OldSize: 5, Proof: l.proof(t, 5, 8), Checkpoint: l.at(8).Marshal()}.Marshal()
		}, want{400, "", 5}},
		{"checkpoint text malformed", func(l *testLog) []byte {
			cp, err := note.Sign(&note.Note{Text: logOrigin + "\n08\n" + l.at(8).Hash.String() + "\n"}, l.signer)
			if err != nil {
				t.Fatal(err)
			}
			return witness.Request{OldSize: 5, Proof: l.proof(t, 5, 8), Checkpoint: cp}.Marshal()
		}, want{400, "", 5}},
		{"checkpoint with a control character", func(l *testLog) []byte {
			r := l.request(t, 5, 8)
			r.Checkpoint = append(r.Checkpoint[:len(r.Checkpoint)-1], '\r', '\n')
			return r.Marshal()
		}, want{400, "", 5}},
		{"oversized body", func(l *testLog) []byte {
			b := l.request(t, 5, 8).Marshal()
			return append(b, bytes.Repeat([]byte("x"), witness.MaxRequestSize)...)
		}, want{413, "", 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newTestLogWithKey(t, logOrigin, key).grow(3, "log").grow(9, "log")
			f := newWitness(t, l, otherLogVerifierless(t))
			f.cosign(t, l, 0, 5)
			before := f.held(t, logOrigin)
			f.clock.Set(f.clock.Now().Add(time.Minute))

			rec := post(t, f.w, tc.body(l))
			if rec.Code != tc.want.code {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want.code, rec.Body)
			}
			got := rec.Body.String()
			switch tc.want.code {
			case http.StatusConflict:
				if got != tc.want.body || rec.Header().Get("Content-Type") != witness.ContentTypeSize {
					t.Fatalf("409 body %q (%s), want %q (%s)", got, rec.Header().Get("Content-Type"), tc.want.body, witness.ContentTypeSize)
				}
			default:
				if !strings.Contains(got, tc.want.body) {
					t.Fatalf("body %q does not contain %q", got, tc.want.body)
				}
			}
			after := f.held(t, logOrigin)
			if after.Size != tc.want.size {
				t.Fatalf("witness holds size %d, want %d", after.Size, tc.want.size)
			}
			if tc.want.code != http.StatusOK {
				if !bytes.Equal(after.Checkpoint, before.Checkpoint) || !after.Time.Equal(before.Time) {
					t.Fatal("a refused request changed the witness's state")
				}
				return
			}
			// The response is one cosignature from the witness's key over
			// the checkpoint, with the current time; the witness keeps the
			// checkpoint with the log's signature and its cosignature only.
			if strings.Count(got, "\n") != 1 {
				t.Fatalf("response %q is not one signature line", got)
			}
			signed := l.signed(t, after.Size)
			_, n, err := auditlog.OpenCheckpoint(append(signed, got...), l.verifier, f.self)
			if err != nil {
				t.Fatalf("response does not verify: %v", err)
			}
			if err := auditlog.CheckQuorum(n, 1, f.self); err != nil {
				t.Fatal(err)
			}
			for _, s := range n.Sigs {
				if s.Name == witnessName {
					if ts, err := auditlog.CosignatureTime(s); err != nil || !ts.Equal(f.clock.Now()) {
						t.Fatalf("cosignature time %v, %v; want %v", ts, err, f.clock.Now())
					}
				}
			}
			if want := append(signed, got...); !bytes.Equal(after.Checkpoint, want) {
				t.Fatalf("witness keeps\n%s\nwant\n%s", after.Checkpoint, want)
			}
			latest, err := f.w.Latest(t.Context(), logOrigin)
			if err != nil || !bytes.Equal(latest, after.Checkpoint) {
				t.Fatalf("Latest = %q, %v", latest, err)
			}
		})
	}
}

// otherLogVerifierless is a second followed log, so that the witness
// follows more than one.
func otherLogVerifierless(t testing.TB) *testLog { return newTestLog(t, "second.example/log") }

func TestAddCheckpointFirstTime(t *testing.T) {
	l := newTestLog(t, logOrigin).grow(7, "log")
	tests := []struct {
		name string
		req  witness.Request
		code int
	}{
		{"from zero", l.request(t, 0, 7), 200},
		{"empty tree", l.request(t, 0, 0), 200},
		{"from zero with a proof", witness.Request{OldSize: 0, Proof: l.proof(t, 3, 7), Checkpoint: l.signed(t, 7)}, 422},
		{"from a size it never saw", l.request(t, 3, 7), 409},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newWitness(t, l)
			rec := post(t, f.w, tc.req.Marshal())
			if rec.Code != tc.code {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
			if tc.code == 409 && rec.Body.String() != "0\n" {
				t.Fatalf("409 body %q, want 0", rec.Body)
			}
			_, err := f.w.Latest(t.Context(), logOrigin)
			if got := err == nil; got != (tc.code == 200) {
				t.Fatalf("after %d, Latest: %v", tc.code, err)
			}
		})
	}
}

func TestHandlerMethods(t *testing.T) {
	f := newWitness(t)
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		rec := httptest.NewRecorder()
		f.w.Handler().ServeHTTP(rec, httptest.NewRequest(m, "/add-checkpoint", nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s: status %d, want 405", m, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	f.w.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/checkpoint", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("other path: status %d, want 404", rec.Code)
	}
}

// A cosignature's time never goes back for a log, even if the clock does.
func TestCosignatureTimeNeverGoesBack(t *testing.T) {
	l := newTestLog(t, logOrigin).grow(6, "log")
	f := newWitness(t, l)
	t0 := f.clock.Now()
	f.cosign(t, l, 0, 3)
	f.clock.Set(t0.Add(-time.Hour))
	f.cosign(t, l, 3, 6)
	if got := f.held(t, logOrigin).Time; !got.Equal(t0) {
		t.Fatalf("cosignature time %v after the clock went back, want %v", got, t0)
	}
	f.clock.Set(t0.Add(time.Hour + 1500*time.Millisecond))
	f.cosign(t, l, 6, 6)
	if got := f.held(t, logOrigin).Time; !got.Equal(t0.Add(time.Hour + time.Second)) {
		t.Fatalf("cosignature time %v, want %v (whole seconds)", got, t0.Add(time.Hour+time.Second))
	}
}

// Of requests racing from the same state, exactly one advances the witness;
// the others get a 409 naming the size it moved to, and a fork never wins.
func TestAddCheckpointRace(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	l := newTestLogWithKey(t, logOrigin, key).grow(16, "log")
	fork := newTestLogWithKey(t, logOrigin, key).grow(2, "log").grow(14, "fork")
	for round := range 5 {
		f := newWitness(t, l)
		f.cosign(t, l, 0, 4)
		var bodies [][]byte
		for size := uint64(5); size <= 16; size++ {
			bodies = append(bodies, l.request(t, 4, size).Marshal())
			bodies = append(bodies, fork.request(t, 4, size).Marshal())
		}
		codes := make([]int, len(bodies))
		resps := make([]string, len(bodies))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, b := range bodies {
			wg.Go(func() {
				<-start
				rec := post(t, f.w, b)
				codes[i], resps[i] = rec.Code, rec.Body.String()
			})
		}
		close(start)
		wg.Wait()
		won := -1
		for i, c := range codes {
			switch {
			case c == 200 && i%2 == 1:
				t.Fatalf("round %d: a forked checkpoint was cosigned", round)
			case c == 200 && won >= 0:
				t.Fatalf("round %d: two racing requests were cosigned", round)
			case c == 200:
				won = i
			case i%2 == 0 && c != 409:
				t.Fatalf("round %d: a consistent request that lost got %d: %s", round, c, resps[i])
			case i%2 == 1 && c != 409 && c != 422:
				t.Fatalf("round %d: a forked request got %d: %s", round, c, resps[i])
			}
		}
		if won < 0 {
			t.Fatalf("round %d: no request won: %v", round, codes)
		}
		size := uint64(5 + won/2)
		if got := f.held(t, logOrigin); got.Size != size || auditlog.Hash(got.Root) != l.at(size).Hash {
			t.Fatalf("round %d: witness holds size %d, the winner was %d", round, got.Size, size)
		}
		for i, c := range codes {
			if c == 409 && resps[i] != fmt.Sprintf("%d\n", size) {
				t.Fatalf("round %d: 409 body %q", round, resps[i])
			}
		}
	}
}

func TestLatest(t *testing.T) {
	l := newTestLog(t, logOrigin).grow(3, "log")
	f := newWitness(t, l)
	if _, err := f.w.Latest(t.Context(), logOrigin); !errors.Is(err, witness.ErrNoCheckpoint) {
		t.Fatalf("Latest before any cosignature: %v, want ErrNoCheckpoint", err)
	}
	f.cosign(t, l, 0, 3)
	got, err := f.w.Latest(t.Context(), logOrigin)
	if err != nil {
		t.Fatal(err)
	}
	cp, n, err := auditlog.OpenCheckpoint(got, l.verifier, f.self)
	if err != nil || cp.Size != 3 || cp.Hash != l.at(3).Hash {
		t.Fatalf("Latest does not open: %v", err)
	}
	if err := auditlog.CheckQuorum(n, 1, f.self); err != nil {
		t.Fatal(err)
	}
	// A record whose cosignature is not the witness's is not handed out.
	rec := f.held(t, logOrigin)
	rec.Checkpoint = l.signed(t, 3)
	if err := f.st.SetWitnessLog(t.Context(), 3, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := f.w.Latest(t.Context(), logOrigin); err == nil {
		t.Fatal("Latest handed out a checkpoint without the witness's cosignature")
	}
}

func TestNew(t *testing.T) {
	l := newTestLog(t, logOrigin)
	other := newTestLog(t, "other.example/log")
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	st := newWitness(t).st
	tests := []struct {
		name string
		key  ed25519.PrivateKey
		cfg  witness.Config
		ok   bool
	}{
		{"valid", key, witness.Config{Name: witnessName, Logs: []witness.Log{{Verifier: l.verifier}, {Origin: other.origin, Verifier: other.verifier}}}, true},
		{"no logs", key, witness.Config{Name: witnessName}, true},
		{"empty name", key, witness.Config{Name: ""}, false},
		{"name with a space", key, witness.Config{Name: "a b"}, false},
		{"name with a plus", key, witness.Config{Name: "a+b"}, false},
		{"nil key", nil, witness.Config{Name: witnessName}, false},
		{"nil verifier", key, witness.Config{Name: witnessName, Logs: []witness.Log{{Origin: logOrigin}}}, false},
		{"origin is not the key name", key, witness.Config{Name: witnessName, Logs: []witness.Log{{Origin: "x.example/log", Verifier: l.verifier}}}, false},
		{"log twice", key, witness.Config{Name: witnessName, Logs: []witness.Log{{Verifier: l.verifier}, {Verifier: l.verifier}}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w *witness.Witness
			var err error
			if tc.key == nil {
				w, err = witness.New(st, nil, tc.cfg)
			} else {
				w, err = witness.New(st, tc.key, tc.cfg)
			}
			if (err == nil) != tc.ok {
				t.Fatalf("New: %v, want ok=%v", err, tc.ok)
			}
			if err == nil {
				if _, err := auditlog.NewCosignatureVerifier(w.VerifierKey()); err != nil || !strings.HasPrefix(w.VerifierKey(), witnessName+"+") {
					t.Fatalf("VerifierKey %q: %v", w.VerifierKey(), err)
				}
			}
		})
	}
}

// AddCheckpoint's errors are the documented ones.
func TestAddCheckpointErrors(t *testing.T) {
	l := newTestLog(t, logOrigin).grow(8, "log")
	f := newWitness(t, l)
	f.cosign(t, l, 0, 5)
	ctx := context.Background()
	_, err := f.w.AddCheckpoint(ctx, l.request(t, 0, 8))
	ce, ok := errors.AsType[*witness.ConflictError](err)
	if !ok || ce.Size != 5 || !errors.Is(err, witness.ErrConflict) {
		t.Fatalf("wrong old size: %v", err)
	}
	if _, err := f.w.AddCheckpoint(ctx, witness.Request{OldSize: 5, Checkpoint: l.signed(t, 8)}); !errors.Is(err, witness.ErrProof) {
		t.Fatalf("bad proof: %v", err)
	}
	if _, err := f.w.AddCheckpoint(ctx, witness.Request{OldSize: 5, Checkpoint: []byte("x")}); !errors.Is(err, witness.ErrMalformed) {
		t.Fatalf("malformed: %v", err)
	}
}

// alterLastSignature flips a bit of the signature (not the key ID) in the
// note's last signature line.
func alterLastSignature(t testing.TB, signed []byte) []byte {
	t.Helper()
	i := bytes.LastIndex(signed, []byte(" ")) + 1
	raw, err := base64.StdEncoding.DecodeString(string(signed[i : len(signed)-1]))
	if err != nil {
		t.Fatal(err)
	}
	raw[10] ^= 1
	return append(bytes.Clone(signed[:i]), base64.StdEncoding.EncodeToString(raw)+"\n"...)
}
