// Package spool is the guard's durable local spool. When the audit log
// cannot take an access event, the guard may write the event here instead:
// Put returns once the event is on disk (fsync), so the response it
// records may be released. Drain moves spooled events into the log, in
// order and once, when the log is back.
//
// A spool is a directory holding two files: "spool", the events, each
// framed as a four-byte big-endian length, a four-byte CRC-32C of the event
// and the event; and "state", how far the log has taken them. A crash can
// tear only the end of "spool", which holds events no Put acknowledged;
// Open cuts it off. Spooled events are not tamper-evident until they are in
// the log: the directory belongs on local disk, owned by custos alone.
package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/custos-dev/custos/internal/durable"
	"github.com/custos-dev/custos/internal/flock"
)

// Log is where spooled events go.
type Log interface {
	// AppendAll appends entries, in order, in one commit: all of them
	// are stored, or none.
	AppendAll(ctx context.Context, entries [][]byte) (uint64, error)
	// Size is the number of entries the log holds.
	Size(ctx context.Context) (uint64, error)
	// Entries calls fn with the log's entries [from, to), in order.
	Entries(ctx context.Context, from, to uint64, fn func(index uint64, entry []byte) error) error
}

// Limits.
const (
	// DefaultMaxBytes bounds the spool's file.
	DefaultMaxBytes = 1 << 30
	// MaxEntrySize is the largest event the spool takes.
	MaxEntrySize = 1<<16 - 1
	// drainBatch bounds the events moved into the log in one commit.
	drainBatch      = 1024
	drainBatchBytes = 1 << 20
	headerSize      = 8
)

// Errors.
var (
	// ErrFull: the spool holds MaxBytes of events not yet in the log.
	ErrFull = errors.New("spool: full")
	// ErrBroken: a write or sync of the spool failed, so what it holds
	// is uncertain; it takes no more events until reopened.
	ErrBroken = errors.New("spool: a write failed; the spool takes no more events")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Spool is a durable local queue of events bound for the log. It is safe
// for concurrent use.
type Spool struct {
	dir    string
	max    int64
	f      *os.File
	unlock func() error

	mu      sync.Mutex
	size    int64 // bytes written
	drained int64 // bytes the log has taken
	events  int   // events written and not yet drained
	broken  error

	smu    sync.Mutex // one fsync at a time
	synced int64      // bytes known durable; under smu

	dmu sync.Mutex // one drain at a time
}

// Status is what a spool holds.
type Status struct {
	Events  int   // events not yet in the log
	Bytes   int64 // their size on disk
	Dropped int64 // bytes of torn tail cut off by Open
}

// Open opens or creates the spool in dir (0700). maxBytes bounds the
// events it holds at once (0 means DefaultMaxBytes). A spool has one user
// at a time: a second Open of the same directory fails.
func Open(dir string, maxBytes int64) (*Spool, Status, error) {
	if maxBytes == 0 {
		maxBytes = DefaultMaxBytes
	}
	if maxBytes < headerSize+1 {
		return nil, Status{}, fmt.Errorf("spool: MaxBytes %d is too small", maxBytes)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, Status{}, fmt.Errorf("spool: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, Status{}, fmt.Errorf("spool: %w", err)
	} else if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		// The events name customers and their readers.
		return nil, Status{}, fmt.Errorf("spool: %s is open to other users (mode %#o): chmod 700 it", dir, perm)
	}
	unlock, err := flock.Lock(filepath.Join(dir, "lock"))
	if err != nil {
		// Two processes appending to one spool would interleave.
		return nil, Status{}, fmt.Errorf("spool: %s is in use by another process: %w", dir, err)
	}
	s := &Spool{dir: dir, max: maxBytes, unlock: unlock}
	st, err := s.load()
	if err != nil {
		unlock()
		if s.f != nil {
			s.f.Close()
		}
		return nil, Status{}, err
	}
	return s, st, nil
}

// load reads the state, finds the spool's intact end and cuts off the
// rest, and recovers an interrupted truncation.
func (s *Spool) load() (Status, error) {
	f, err := os.OpenFile(filepath.Join(s.dir, "spool"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return Status{}, fmt.Errorf("spool: %w", err)
	}
	s.f = f
	st, err := readState(s.dir)
	if err != nil {
		return Status{}, err
	}
	info, err := f.Stat()
	if err != nil {
		return Status{}, fmt.Errorf("spool: %w", err)
	}
	if st.drained > info.Size() {
		// Drained to the end, then truncated before the state said so.
		st = state{}
		if err := writeState(s.dir, st); err != nil {
			return Status{}, err
		}
	}
	end, events, err := scan(f, st.drained, info.Size())
	if err != nil {
		return Status{}, err
	}
	dropped := info.Size() - end
	if dropped > 0 {
		if err := f.Truncate(end); err != nil {
			return Status{}, fmt.Errorf("spool: cut torn tail: %w", err)
		}
		if err := f.Sync(); err != nil {
			return Status{}, fmt.Errorf("spool: %w", err)
		}
	}
	// An interrupted commit (st.inflight) is resolved by the next Drain,
	// which can ask the log.
	s.size, s.synced, s.drained, s.events = end, end, st.drained, events
	return Status{Events: events, Bytes: end - st.drained, Dropped: dropped}, nil
}

// scan returns the end of the intact events in f from off, and how many
// there are.
func scan(f *os.File, off, size int64) (int64, int, error) {
	r := io.NewSectionReader(f, off, size-off)
	var hdr [headerSize]byte
	n := 0
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return off, n, nil // the end, or a torn header
		}
		l := int64(binary.BigEndian.Uint32(hdr[:4]))
		if l == 0 || l > MaxEntrySize || off+headerSize+l > size {
			return off, n, nil
		}
		body := make([]byte, l)
		if _, err := io.ReadFull(r, body); err != nil {
			return 0, 0, fmt.Errorf("spool: %w", err)
		}
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
			return off, n, nil
		}
		off += headerSize + l
		n++
	}
}

// Close closes the spool. What it holds stays for the next Open.
func (s *Spool) Close() error {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.f.Close()
	if uerr := s.unlock(); err == nil {
		err = uerr
	}
	return err
}

// Put writes entry to the spool and returns once it is durable.
func (s *Spool) Put(entry []byte) error {
	if len(entry) == 0 || len(entry) > MaxEntrySize {
		return fmt.Errorf("spool: entry of %d bytes", len(entry))
	}
	rec := make([]byte, headerSize+len(entry))
	binary.BigEndian.PutUint32(rec[:4], uint32(len(entry)))
	binary.BigEndian.PutUint32(rec[4:8], crc32.Checksum(entry, castagnoli))
	copy(rec[headerSize:], entry)

	s.mu.Lock()
	if err := s.broken; err != nil {
		s.mu.Unlock()
		return err
	}
	if s.size+int64(len(rec)) > s.max {
		// The file, drained part included: it is emptied only once the
		// log holds all of it.
		s.mu.Unlock()
		return fmt.Errorf("%w: %d bytes, %d of them waiting for the log", ErrFull, s.size, s.size-s.drained)
	}
	if _, err := s.f.WriteAt(rec, s.size); err != nil {
		s.broken = fmt.Errorf("%w: write: %v", ErrBroken, err)
		s.mu.Unlock()
		return s.broken
	}
	s.size += int64(len(rec))
	s.events++
	end := s.size
	s.mu.Unlock()
	return s.sync(end)
}

// sync returns once the spool is durable up to end. One fsync covers every
// Put written before it started.
func (s *Spool) sync(end int64) error {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.synced >= end {
		return nil
	}
	s.mu.Lock()
	target, broken := s.size, s.broken
	s.mu.Unlock()
	if broken != nil {
		return broken
	}
	if err := s.f.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the pages:
		// nothing written since the last good one can be trusted.
		return s.fail(fmt.Errorf("%w: sync: %v", ErrBroken, err))
	}
	s.synced = target
	return nil
}

// fail marks the spool broken with err, and returns err.
func (s *Spool) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken == nil {
		s.broken = err
	}
	return err
}

// Status returns what the spool holds now.
func (s *Spool) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{Events: s.events, Bytes: s.size - s.drained}
}

// Pending reports whether the spool holds events not yet in the log.
func (s *Spool) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size > s.drained
}

// Drain moves the spooled events into log, oldest first, in commits of up
// to drainBatch, and returns how many it moved. Each event reaches the log
// exactly once: before a commit the state records the events and the log's
// size, and a Drain after a crash looks in the log past that size to learn
// whether the commit happened. (The log's own commit can leave one case
// open: see tlog.Log.Append.) When everything is drained, the spool's file
// is emptied.
func (s *Spool) Drain(ctx context.Context, log Log) (int, error) {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.mu.Lock()
	broken := s.broken
	s.mu.Unlock()
	if broken != nil {
		// What is on disk may differ from what this process holds:
		// the next Open reads it afresh.
		return 0, broken
	}
	st, err := readState(s.dir)
	if err != nil {
		return 0, err
	}
	moved := 0
	if st.inflight != nil {
		if st, moved, err = s.resolve(ctx, log, st); err != nil {
			return 0, err
		}
	}
	for {
		s.smu.Lock()
		synced := s.synced
		s.smu.Unlock()
		if st.drained >= synced {
			break
		}
		entries, end, err := s.read(st.drained, synced)
		if err != nil {
			return moved, err
		}
		size, err := log.Size(ctx)
		if err != nil {
			return moved, fmt.Errorf("spool: log size: %w", err)
		}
		st.inflight = &inflight{from: st.drained, to: end, logSize: size}
		if err := writeState(s.dir, st); err != nil {
			return moved, err
		}
		if _, err := log.AppendAll(ctx, entries); err != nil {
			// Maybe stored, maybe not: the next Drain asks the log.
			return moved, fmt.Errorf("spool: append to the log: %w", err)
		}
		st = state{drained: end}
		if err := writeState(s.dir, st); err != nil {
			return moved, err
		}
		s.mu.Lock()
		s.drained = end
		s.events -= len(entries)
		s.mu.Unlock()
		moved += len(entries)
	}
	return moved, s.truncateIfDrained()
}

// resolve settles a commit a crash or an error interrupted: its events are
// in the log past the size recorded before it, or not at all. It returns
// how many events it found there.
func (s *Spool) resolve(ctx context.Context, log Log, st state) (state, int, error) {
	in := *st.inflight
	entries, end, err := s.read(in.from, in.to)
	if err != nil {
		return st, 0, err
	}
	if end != in.to || len(entries) == 0 {
		return st, 0, fmt.Errorf("spool: state names events %d-%d the spool does not hold whole", in.from, in.to)
	}
	size, err := log.Size(ctx)
	if err != nil {
		return st, 0, fmt.Errorf("spool: log size: %w", err)
	}
	found := false
	errFound := errors.New("found")
	err = log.Entries(ctx, in.logSize, size, func(_ uint64, e []byte) error {
		if bytes.Equal(e, entries[0]) {
			found = true
			return errFound
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) {
		// For example, retention pruned the entries past in.logSize:
		// the spool waits, and the guard fails closed once it is full.
		return st, 0, fmt.Errorf("spool: read the log from %d to learn whether an interrupted commit happened: %w", in.logSize, err)
	}
	st = state{drained: in.from}
	if !found {
		return st, 0, writeState(s.dir, st)
	}
	st.drained = in.to
	if err := writeState(s.dir, st); err != nil {
		return st, 0, err
	}
	s.mu.Lock()
	s.drained = st.drained
	s.events -= len(entries)
	s.mu.Unlock()
	return st, len(entries), nil
}

// read returns the events in [from, to), at most drainBatch of them and
// about drainBatchBytes, and where the last one ends.
func (s *Spool) read(from, to int64) ([][]byte, int64, error) {
	n := min(to-from, drainBatchBytes+headerSize+MaxEntrySize)
	buf := make([]byte, n)
	if _, err := s.f.ReadAt(buf, from); err != nil {
		return nil, 0, fmt.Errorf("spool: read: %w", err)
	}
	var entries [][]byte
	off := 0
	for len(entries) < drainBatch && off+headerSize <= len(buf) && (off < drainBatchBytes || len(entries) == 0) {
		l := int(binary.BigEndian.Uint32(buf[off : off+4]))
		if l == 0 || l > MaxEntrySize {
			return nil, 0, fmt.Errorf("spool: event at byte %d is damaged", from+int64(off))
		}
		if off+headerSize+l > len(buf) {
			break
		}
		e := buf[off+headerSize : off+headerSize+l]
		if crc32.Checksum(e, castagnoli) != binary.BigEndian.Uint32(buf[off+4:off+8]) {
			return nil, 0, fmt.Errorf("spool: event at byte %d is damaged", from+int64(off))
		}
		entries = append(entries, e)
		off += headerSize + l
	}
	if len(entries) == 0 {
		return nil, 0, fmt.Errorf("spool: no whole event at byte %d", from)
	}
	return entries, from + int64(off), nil
}

// truncateIfDrained empties the spool's file once the log holds all of it.
func (s *Spool) truncateIfDrained() error {
	s.smu.Lock() // before mu, as in sync
	defer s.smu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drained != s.size || s.size == 0 || s.broken != nil {
		return nil
	}
	// The file first: a crash before the state is written leaves a
	// state past the file's end, which Open reads as drained.
	// Past this point, a failure leaves the file or the state unlike
	// what this process holds: the spool takes no more until reopened.
	err := s.f.Truncate(0)
	if err == nil {
		err = s.f.Sync()
	}
	if err == nil {
		err = writeState(s.dir, state{})
	}
	if err != nil {
		if s.broken == nil {
			s.broken = fmt.Errorf("%w: empty the drained spool: %v", ErrBroken, err)
		}
		return s.broken
	}
	s.size, s.drained, s.synced, s.events = 0, 0, 0, 0
	return nil
}

// state is how far the log has taken the spool's events.
type state struct {
	drained  int64
	inflight *inflight // a commit to the log that may or may not have happened
}

type inflight struct {
	from, to int64  // the events' bytes in the spool
	logSize  uint64 // the log's size before the commit
}

const stateHeader = "custos-spool v1"

func readState(dir string) (state, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state"))
	if errors.Is(err, os.ErrNotExist) {
		return state{}, nil
	}
	if err != nil {
		return state{}, fmt.Errorf("spool: %w", err)
	}
	bad := func() (state, error) {
		return state{}, fmt.Errorf("spool: %s is damaged", filepath.Join(dir, "state"))
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) < 2 || len(lines) > 3 || lines[0] != stateHeader {
		return bad()
	}
	var st state
	f := strings.Fields(lines[1])
	if len(f) != 2 || f[0] != "drained" {
		return bad()
	}
	if st.drained, err = strconv.ParseInt(f[1], 10, 64); err != nil || st.drained < 0 {
		return bad()
	}
	if len(lines) == 3 {
		f := strings.Fields(lines[2])
		if len(f) != 4 || f[0] != "inflight" {
			return bad()
		}
		var in inflight
		var e1, e2, e3 error
		in.from, e1 = strconv.ParseInt(f[1], 10, 64)
		in.to, e2 = strconv.ParseInt(f[2], 10, 64)
		in.logSize, e3 = strconv.ParseUint(f[3], 10, 64)
		if e1 != nil || e2 != nil || e3 != nil || in.from != st.drained || in.to <= in.from {
			return bad()
		}
		st.inflight = &in
	}
	return st, nil
}

// writeState replaces the state file durably: a new file, synced, renamed
// over the old, and the directory synced.
func writeState(dir string, st state) error {
	b := fmt.Appendf(nil, "%s\ndrained %d\n", stateHeader, st.drained)
	if in := st.inflight; in != nil {
		b = fmt.Appendf(b, "inflight %d %d %d\n", in.from, in.to, in.logSize)
	}
	tmp := filepath.Join(dir, "state.tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, "state"))
	}
	if err == nil {
		err = durable.SyncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("spool: write state: %w", err)
	}
	return nil
}
