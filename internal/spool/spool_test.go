package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// memLog is a log in memory. fail makes AppendAll fail; failAfterStore
// makes it store the entries and then fail, as a commit whose outcome was
// lost would.
type memLog struct {
	mu             sync.Mutex
	entries        [][]byte
	fail           bool
	failAfterStore bool
	commits        int
}

func (m *memLog) AppendAll(ctx context.Context, entries [][]byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return 0, errors.New("log unavailable")
	}
	first := uint64(len(m.entries))
	for _, e := range entries {
		m.entries = append(m.entries, bytes.Clone(e))
	}
	m.commits++
	if m.failAfterStore {
		return 0, errors.New("commit outcome lost")
	}
	return first, nil
}

func (m *memLog) Size(ctx context.Context) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return 0, errors.New("log unavailable")
	}
	return uint64(len(m.entries)), nil
}

func (m *memLog) Entries(ctx context.Context, from, to uint64, fn func(uint64, []byte) error) error {
	m.mu.Lock()
	es := m.entries[from:to]
	m.mu.Unlock()
	for i, e := range es {
		if err := fn(from+uint64(i), e); err != nil {
			return err
		}
	}
	return nil
}

func (m *memLog) set(fail, failAfterStore bool) {
	m.mu.Lock()
	m.fail, m.failAfterStore = fail, failAfterStore
	m.mu.Unlock()
}

// spoolDir is a new directory for a spool, which Open creates.
func spoolDir(t *testing.T) string { return filepath.Join(t.TempDir(), "spool") }

// madeSpoolDir is a new directory for a spool, made as Open makes it.
func madeSpoolDir(t *testing.T) string {
	dir := spoolDir(t)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func ev(i int) []byte { return fmt.Appendf(nil, `{"event":%d,"pad":"%0*d"}`, i, i%50, 0) }

func open(t *testing.T, dir string, max int64) *Spool {
	t.Helper()
	s, _, err := Open(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t *testing.T, s *Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Put(ev(i)); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
}

// wantLog checks that the log holds exactly events [0, n), in order.
func wantLog(t *testing.T, m *memLog, n int) {
	t.Helper()
	if len(m.entries) != n {
		t.Fatalf("log holds %d events, want %d", len(m.entries), n)
	}
	for i, e := range m.entries {
		if !bytes.Equal(e, ev(i)) {
			t.Fatalf("log entry %d is %s, want %s", i, e, ev(i))
		}
	}
}

func TestPutDrain(t *testing.T) {
	dir := spoolDir(t)
	s := open(t, dir, 0)
	put(t, s, 0, 3000) // more than one drain batch
	if st := s.Status(); st.Events != 3000 || !s.Pending() {
		t.Fatalf("status %+v, pending %v", st, s.Pending())
	}
	m := &memLog{}
	n, err := s.Drain(t.Context(), m)
	if err != nil || n != 3000 {
		t.Fatalf("drain: %d, %v", n, err)
	}
	wantLog(t, m, 3000)
	if m.commits < 3 {
		t.Errorf("3000 events drained in %d commits, want batches of at most %d", m.commits, drainBatch)
	}
	if st := s.Status(); st.Events != 0 || st.Bytes != 0 || s.Pending() {
		t.Fatalf("after drain: %+v", st)
	}
	if fi, err := os.Stat(filepath.Join(dir, "spool")); err != nil || fi.Size() != 0 {
		t.Fatalf("spool file after drain: %v, %v", fi.Size(), err)
	}
	// Nothing left: a second drain moves nothing.
	if n, err := s.Drain(t.Context(), m); n != 0 || err != nil {
		t.Fatalf("second drain: %d, %v", n, err)
	}
	put(t, s, 3000, 3010)
	if _, err := s.Drain(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	wantLog(t, m, 3010)
}

// While the log is down, Drain keeps the events; once it is back, they go
// in, once.
func TestDrainWaitsForTheLog(t *testing.T) {
	s := open(t, spoolDir(t), 0)
	put(t, s, 0, 10)
	m := &memLog{fail: true}
	if n, err := s.Drain(t.Context(), m); err == nil || n != 0 {
		t.Fatalf("drain into a failing log: %d, %v", n, err)
	}
	if s.Status().Events != 10 {
		t.Fatalf("events lost: %+v", s.Status())
	}
	m.set(false, false)
	if n, err := s.Drain(t.Context(), m); err != nil || n != 10 {
		t.Fatalf("drain: %d, %v", n, err)
	}
	wantLog(t, m, 10)
}

// A commit whose outcome was lost (stored, then an error, as a crash after
// the commit gives) is found in the log, not appended again; one that was
// not stored is appended.
func TestInterruptedDrainIsExactlyOnce(t *testing.T) {
	dir := spoolDir(t)
	s := open(t, dir, 0)
	put(t, s, 0, 5)
	m := &memLog{failAfterStore: true}
	if _, err := s.Drain(t.Context(), m); err == nil {
		t.Fatal("drain reported success for a lost commit")
	}
	m.set(false, false)
	m.entries = append(m.entries, []byte(`{"other":"appender"}`)) // others append meanwhile
	if n, err := s.Drain(t.Context(), m); err != nil || n != 5 {
		t.Fatalf("drain after the lost commit: moved %d, %v; want the 5 found in the log", n, err)
	}
	if len(m.entries) != 6 {
		t.Fatalf("log holds %d entries after the lost commit was resolved, want 6", len(m.entries))
	}
	if s.Pending() {
		t.Fatal("resolved events still pending")
	}

	// The same across a restart: the state on disk says what is in
	// flight.
	put(t, s, 5, 8)
	m.set(false, true)
	if _, err := s.Drain(t.Context(), m); err == nil {
		t.Fatal("drain reported success for a lost commit")
	}
	s.Close()
	s = open(t, dir, 0)
	m.set(false, false)
	if n, err := s.Drain(t.Context(), m); err != nil || n != 3 {
		t.Fatalf("drain after restart: moved %d, %v; want the 3 found in the log", n, err)
	}
	if len(m.entries) != 9 {
		t.Fatalf("log holds %d entries, want 9", len(m.entries))
	}

	// A commit that failed without storing is appended by the next Drain.
	put(t, s, 8, 10)
	m.set(true, false)
	s.Drain(t.Context(), m)
	m.set(false, false)
	if n, err := s.Drain(t.Context(), m); err != nil || n != 2 {
		t.Fatalf("drain after a failed commit: %d, %v", n, err)
	}
	if len(m.entries) != 11 || !bytes.Equal(m.entries[9], ev(8)) || !bytes.Equal(m.entries[10], ev(9)) {
		t.Fatalf("log after a failed commit: %d entries", len(m.entries))
	}
}

// Events survive a restart; a torn tail, which no Put acknowledged, is cut
// off.
func TestReopenCutsTornTail(t *testing.T) {
	dir := spoolDir(t)
	s := open(t, dir, 0)
	put(t, s, 0, 20)
	s.Close()
	f, err := os.OpenFile(filepath.Join(dir, "spool"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 1, 0, 1, 2, 3, 4, '{'}) // a record whose write was torn
	f.Close()
	s2, st, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if st.Events != 20 || st.Dropped != 9 {
		t.Fatalf("reopened: %+v, want 20 events and 9 bytes dropped", st)
	}
	put(t, s2, 20, 25)
	m := &memLog{}
	if n, err := s2.Drain(t.Context(), m); err != nil || n != 25 {
		t.Fatalf("drain: %d, %v", n, err)
	}
	wantLog(t, m, 25)
}

// A record whose checksum does not match ends the intact part.
func TestReopenCutsDamagedRecord(t *testing.T) {
	dir := spoolDir(t)
	s := open(t, dir, 0)
	put(t, s, 0, 3)
	s.Close()
	b, err := os.ReadFile(filepath.Join(dir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-2] ^= 1 // in the last event
	os.WriteFile(filepath.Join(dir, "spool"), b, 0o600)
	s2, st, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if st.Events != 2 || st.Dropped != int64(headerSize+len(ev(2))) {
		t.Fatalf("reopened: %+v", st)
	}
}

func TestFull(t *testing.T) {
	s := open(t, spoolDir(t), int64(3*headerSize+len(ev(0))+len(ev(1))+len(ev(2))))
	put(t, s, 0, 3)
	if err := s.Put(ev(3)); !errors.Is(err, ErrFull) {
		t.Fatalf("put into a full spool: %v", err)
	}
	m := &memLog{}
	if _, err := s.Drain(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	put(t, s, 0, 3) // room again
	if err := s.Put(nil); err == nil {
		t.Error("an empty event was spooled")
	}
	if err := s.Put(make([]byte, MaxEntrySize+1)); err == nil {
		t.Error("an oversize event was spooled")
	}
}

func TestOneUserAtATime(t *testing.T) {
	dir := spoolDir(t)
	s := open(t, dir, 0)
	if _, _, err := Open(dir, 0); err == nil {
		t.Fatal("a second Open of the same spool succeeded")
	}
	s.Close()
	s2, _, err := Open(dir, 0)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	s2.Close()
}

func TestDamagedStateIsRefused(t *testing.T) {
	for _, text := range []string{
		"custos-spool v2\ndrained 0\n",
		"custos-spool v1\ndrained -1\n",
		"custos-spool v1\ndrained x\n",
		"custos-spool v1\ndrained 0\ninflight 8 4 0\n",
		"custos-spool v1\ndrained 0\ninflight 4 8 0\n",
		"",
	} {
		dir := madeSpoolDir(t)
		os.WriteFile(filepath.Join(dir, "state"), []byte(text), 0o600)
		if s, _, err := Open(dir, 0); err == nil {
			s.Close()
			t.Errorf("state %q accepted", text)
		}
	}
}

// A crash after the file was emptied but before the state said so reads
// as an empty spool.
func TestCrashAfterTruncate(t *testing.T) {
	dir := madeSpoolDir(t)
	if err := writeState(dir, state{drained: 4096}); err != nil {
		t.Fatal(err)
	}
	s, st, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st.Events != 0 || st.Bytes != 0 || s.Pending() {
		t.Fatalf("status %+v", st)
	}
	put(t, s, 0, 2)
	m := &memLog{}
	if n, err := s.Drain(t.Context(), m); err != nil || n != 2 {
		t.Fatalf("drain: %d, %v", n, err)
	}
	wantLog(t, m, 2)
}

// Concurrent Puts while Drain runs: every event reaches the log once.
func TestConcurrentPutAndDrain(t *testing.T) {
	s := open(t, spoolDir(t), 0)
	m := &memLog{}
	const writers, each = 8, 250
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() { put(t, s, w*each, (w+1)*each) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		if _, err := s.Drain(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Drain(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]bool)
	for _, e := range m.entries {
		if seen[string(e)] {
			t.Fatalf("%s drained twice", e)
		}
		seen[string(e)] = true
	}
	if len(seen) != writers*each {
		t.Fatalf("%d events in the log, want %d", len(seen), writers*each)
	}
}

func TestOpenRefusesADirectoryOthersCanRead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // past the umask
		t.Fatal(err)
	}
	if s, _, err := Open(dir, 0); err == nil {
		s.Close()
		t.Fatal("a spool in a directory others can read was opened")
	}
	os.Chmod(dir, 0o700)
	s, _, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// A record of length zero is damage, not an empty event: Drain refuses it
// rather than append nothing to the log.
func TestDrainRefusesZeroLengthRecord(t *testing.T) {
	dir := spoolDir(t)
	s := open(t, dir, 0)
	put(t, s, 0, 2)
	// Overwrite the first record's header with zeros, as a hole in the
	// file would read.
	f, err := os.OpenFile(filepath.Join(dir, "spool"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(make([]byte, headerSize), 0)
	f.Close()
	m := &memLog{}
	if n, err := s.Drain(t.Context(), m); err == nil || n != 0 || len(m.entries) != 0 {
		t.Fatalf("drain of a zeroed record: moved %d, %v; log holds %d", n, err, len(m.entries))
	}
}

// The state file's parser refuses what it does not understand, and what
// it accepts writes back the same.
func FuzzReadState(f *testing.F) {
	f.Add("custos-spool v1\ndrained 0\n")
	f.Add("custos-spool v1\ndrained 12\ninflight 12 40 7\n")
	f.Add("custos-spool v1\ndrained 12\ninflight 4 8 0\n")
	f.Fuzz(func(t *testing.T, text string) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "state"), []byte(text), 0o600)
		st, err := readState(dir)
		if err != nil {
			return
		}
		if st.drained < 0 || st.inflight != nil && (st.inflight.from != st.drained || st.inflight.to <= st.inflight.from) {
			t.Fatalf("accepted %q as %+v", text, st)
		}
		if err := writeState(dir, st); err != nil {
			t.Fatal(err)
		}
		again, err := readState(dir)
		if err != nil || again.drained != st.drained || (again.inflight == nil) != (st.inflight == nil) ||
			again.inflight != nil && *again.inflight != *st.inflight {
			t.Fatalf("%q: %+v wrote back as %+v, %v", text, st, again, err)
		}
	})
}
