package auditverify_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/store/sqlite"
	"github.com/custos-dev/custos/internal/tlog"
)

const (
	origin      = "custos.test/audit/0001"
	witnessName = "witness.example/regulator"
)

// fixture is a real audit log (tlog over SQLite, Ed25519 note key) of
// events every three hours from 1 May to 30 June 2026, one commit (chunk)
// per event, with two checkpoints a witness cosigned: one after 20 May
// (early) and the final one. Tests copy its data directory and tamper
// with the copy.
type fixture struct {
	dir        string // the intact data directory; never modified
	oldDir     string // a copy taken right after the early checkpoint
	key        ed25519.PrivateKey
	vkey       string
	logV       note.Verifier
	witnessKey ed25519.PrivateKey
	witness    string // the witness's cosignature verifier key
	entries    [][]byte
	times      []time.Time
	early      []byte // witness-cosigned checkpoint after 20 May
	earlySize  uint64
	final      []byte // witness-cosigned latest checkpoint
	size       uint64
	earlyTime  time.Time // the witness's cosignature times
	finalTime  time.Time
}

var (
	fixtureOnce sync.Once
	theFixture  *fixture
	fixtureErr  error
	fixtureRoot string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "auditverify-fixture")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fixtureRoot = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// getFixture builds the shared log once.
func getFixture(t testing.TB) *fixture {
	t.Helper()
	fixtureOnce.Do(func() { theFixture, fixtureErr = buildFixture(context.Background(), fixtureRoot) })
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return theFixture
}

func eventAt(i int, t time.Time) event.Event {
	return event.Event{
		Time: t, Class: event.ClassAccess, Type: "personal_data_read", Actor: "client:shop",
		Subject: fmt.Sprintf("acc_%04d", i), Client: "shop", IP: "203.0.113.7",
		Fields: map[string]any{"jti": fmt.Sprintf("jti-%04d", i), "categories": "address,phone"},
	}
}

func buildFixture(ctx context.Context, root string) (*fixture, error) {
	f := &fixture{dir: filepath.Join(root, "log"), oldDir: filepath.Join(root, "old")}
	var err error
	if _, f.key, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	if _, f.witnessKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	if f.vkey, err = note.NewEd25519VerifierKey(origin, f.key.Public().(ed25519.PublicKey)); err != nil {
		return nil, err
	}
	if f.logV, err = note.NewVerifier(f.vkey); err != nil {
		return nil, err
	}
	f.witness = auditlog.CosignatureVerifierKey(witnessName, f.witnessKey.Public().(ed25519.PublicKey))
	f.earlyTime = time.Date(2026, 5, 21, 9, 0, 0, 0, time.UTC)
	f.finalTime = time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC)

	st, err := sqlite.Open(ctx, f.dir)
	if err != nil {
		return nil, err
	}
	if err := st.InsertNoteKey(ctx, store.NoteKey{Name: origin, Public: f.key.Public().(ed25519.PublicKey),
		Sealed: []byte("not used by verification"), Sealer: "test", Created: time.Now()}); err != nil {
		return nil, err
	}
	start := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	end := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	earlyEnd := time.Date(2026, 5, 21, 0, 0, 0, 0, time.UTC)
	var times []time.Time
	for t := start; t.Before(end); t = t.Add(3 * time.Hour) {
		times = append(times, t)
	}
	appendRange := func(from, to int) error {
		tl, err := openLog(ctx, st, f.key)
		if err != nil {
			return err
		}
		al := audit.New(tl, st, nil)
		for i := from; i < to; i++ {
			if _, err := al.Append(ctx, eventAt(i, times[i])); err != nil {
				tl.Close()
				return err
			}
		}
		return tl.Close() // integrates and signs a checkpoint of the whole log
	}
	split := 0
	for split < len(times) && times[split].Before(earlyEnd) {
		split++
	}
	if err := appendRange(0, split); err != nil {
		return nil, err
	}
	state, err := st.LogState(ctx)
	if err != nil {
		return nil, err
	}
	f.earlySize = state.Integrated
	if f.early, err = f.cosign(state.Checkpoint, f.earlyTime); err != nil {
		return nil, err
	}
	if err := st.Close(); err != nil {
		return nil, err
	}
	if err := copyDir(f.dir, f.oldDir); err != nil {
		return nil, err
	}
	if st, err = sqlite.Open(ctx, f.dir); err != nil {
		return nil, err
	}
	if err := appendRange(split, len(times)); err != nil {
		return nil, err
	}
	if state, err = st.LogState(ctx); err != nil {
		return nil, err
	}
	f.size = state.Integrated
	if f.final, err = f.cosign(state.Checkpoint, f.finalTime); err != nil {
		return nil, err
	}
	err = tlog.ReadEntries(ctx, st, 0, f.size, func(_ uint64, e []byte) error {
		ev, err := event.Parse(e)
		f.entries = append(f.entries, append([]byte(nil), e...))
		f.times = append(f.times, ev.Time)
		return err
	})
	if err != nil {
		return nil, err
	}
	if uint64(len(times)) != f.size {
		return nil, fmt.Errorf("log has %d entries, want %d", f.size, len(times))
	}
	return f, st.Close()
}

func openLog(ctx context.Context, st tlog.Store, key ed25519.PrivateKey) (*tlog.Log, error) {
	signer, err := auditlog.NewNoteSigner(origin, key)
	if err != nil {
		return nil, err
	}
	vkey, err := note.NewEd25519VerifierKey(origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	return tlog.Open(ctx, st, tlog.Config{Origin: origin, Key: signer, Verifier: v, CheckpointInterval: time.Millisecond})
}

// cosign adds the witness's cosignature, made at time at, to a signed
// checkpoint.
func (f *fixture) cosign(signed []byte, at time.Time) ([]byte, error) {
	n, err := note.Open(signed, note.VerifierList(f.logV))
	if err != nil {
		return nil, err
	}
	c, err := auditlog.NewCosigner(witnessName, f.witnessKey, func() time.Time { return at })
	if err != nil {
		return nil, err
	}
	return note.Sign(n, c)
}

// index returns the index of the first entry at or after t.
func (f *fixture) index(t time.Time) uint64 {
	for i, et := range f.times {
		if !et.Before(t) {
			return uint64(i)
		}
	}
	return uint64(len(f.times))
}

// copyDir copies a closed data directory.
func copyDir(from, to string) error {
	if err := os.MkdirAll(to, 0o700); err != nil {
		return err
	}
	des, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, de := range des {
		if err := copyFile(filepath.Join(from, de.Name()), filepath.Join(to, de.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// clone returns a fresh copy of the intact log's data directory.
func (f *fixture) clone(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := copyDir(f.dir, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sqlExec runs statements on the database in dir, behind the log's back.
func sqlExec(t *testing.T, dir string, stmts ...string) {
	t.Helper()
	db := rawDB(t, dir)
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func rawDB(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}
