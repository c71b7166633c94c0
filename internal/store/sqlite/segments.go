package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/custos-dev/custos/internal/durable"
	"github.com/custos-dev/custos/internal/flock"
)

// Segment files.
//
// A commit of audit-log entries larger than inlineBytes does not write its
// bytes into the database, where they would be written twice (WAL, then
// database), a 4 KiB page at a time. They are appended to a segment file in
// the directory beside the database (custos.db-segments), made durable with
// fsync, and only then is their extent (which entries, which segment, where)
// committed to the database, in the same transaction that gives them their
// indexes. An entry is acknowledged once that transaction is durable, so a
// crash between the two leaves bytes at the end of a segment that no extent
// names, and nothing acknowledged is lost.
//
// Each process that appends writes its own segment, locked (flock) for as
// long as it is appended to or has extents of it being committed, and starts
// a new one when it reaches segmentMax or after a failed write, sync or
// commit. An append's extents are queued for commit before the next append
// from this process writes its bytes (the next one's write and sync overlap
// this one's commit), so within a segment the extents' offsets grow with
// their indexes. Pruning deletes extents, punches out the bytes below a
// segment's lowest remaining extent, and deletes a segment no extent names
// once no process holds it.
const (
	// inlineBytes is the largest commit kept in the database: a few
	// events, where a second fsync would cost more than it saves.
	inlineBytes = 16 << 10
	// segmentMax is the size past which a process starts a new segment.
	segmentMax = 256 << 20
	// segmentMinAge keeps pruning from deleting a segment so young that
	// the process that registered it may not have created its file yet.
	segmentMinAge = time.Hour
	// maxReaders bounds the segment files a Store keeps open for reading;
	// past it, a read opens and closes its file.
	maxReaders = 16
	// SegmentsSuffix names the segment directory: the database file's
	// path with this suffix.
	SegmentsSuffix = "-segments"
)

// A segment file begins with segmentMagic and its id (8 bytes, big-endian),
// which a reader checks; extents start after it.
const (
	segmentMagic  = "custos-segment1\n"
	segmentHeader = int64(len(segmentMagic) + 8)
)

// segments is a Store's segment files.
type segments struct {
	dir string

	// mu serialises this process's segment writes, each up to queueing
	// its extents, and pruning's clean-up.
	mu   sync.Mutex
	cur  *os.File // the segment being appended to, locked; nil before the first
	id   int64
	size int64
	// inflight holds the appends, by segment and offset, whose extents
	// are not yet committed (or failed): pruning leaves their bytes alone.
	inflight map[segPos]bool
	// retired holds abandoned segments with appends still in flight,
	// kept open (so locked) until those are done.
	retired map[int64]*os.File
	// wiped holds, by segment, the offset below which pruning has
	// already removed every byte.
	wiped     map[int64]int64
	dirSynced bool // the segment directory's own entry is durable

	rmu     sync.Mutex
	readers map[int64]*os.File
	closed  bool // no reader is kept open after close
}

type segPos struct{ id, off int64 }

func (g *segments) name(id int64) string {
	return filepath.Join(g.dir, fmt.Sprintf("%016x.seg", id))
}

// appendSegment stores a large chunk: its bytes in this process's segment,
// then its extents, cut at entry-bundle boundaries, in a write transaction
// that assigns their indexes.
func (s *Store) appendSegment(ctx context.Context, count uint64, data []byte) (uint64, error) {
	if err := checkChunk(count, data); err != nil {
		return 0, err
	}
	g := &s.seg
	g.mu.Lock()
	id, off, err := s.segmentWrite(ctx, data)
	if err != nil {
		g.mu.Unlock()
		return 0, err
	}
	// The extents are queued before the next append from this process
	// writes its bytes, so they take their indexes in segment order; the
	// next append's write and sync overlap this one's commit.
	var first uint64
	errc, err := s.queue(ctx, &writeReq{ctx: ctx, fn: func(ctx context.Context, tx *sql.Tx) error {
		var err error
		first, err = s.nextIndexes(ctx, tx, count)
		if err != nil {
			return err
		}
		idx, rest, pos := first, data, off
		for len(rest) > 0 {
			k := min(bundleSize-idx%bundleSize, first+count-idx)
			n := 0
			for range k {
				n += 2 + entryLen(rest[n:])
			}
			if _, err := s.exec(ctx, tx, qInsertExtent, int64(idx), int64(k), id, pos, int64(n)); err != nil {
				return err
			}
			idx, rest, pos = idx+k, rest[n:], pos+int64(n)
		}
		return nil
	}})
	if err != nil {
		g.mu.Unlock()
		return 0, err
	}
	key := segPos{id, off}
	g.inflight[key] = true
	g.mu.Unlock()
	err = <-errc
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.inflight, key)
	if err != nil && id == g.id {
		// The commit may have failed because the segment is gone.
		g.abandon()
	}
	if f := g.retired[id]; f != nil && !g.busy(id) {
		f.Close()
		delete(g.retired, id)
	}
	return first, err
}

// busy reports whether appends to segment id are in flight. g.mu is held.
func (g *segments) busy(id int64) bool {
	for k := range g.inflight {
		if k.id == id {
			return true
		}
	}
	return false
}

// bundleSize is the number of entries in a full entry bundle.
const bundleSize = 256

// checkChunk checks that data is count entries, each with its length.
func checkChunk(count uint64, data []byte) error {
	n := uint64(0)
	for len(data) > 0 {
		l := 2 + entryLen(data)
		if l > len(data) {
			return errors.New("audit log: malformed chunk")
		}
		data, n = data[l:], n+1
	}
	if n != count || count == 0 {
		return errors.New("audit log: malformed chunk")
	}
	return nil
}

// segmentWrite appends data to this process's segment, starting one if
// need be, and returns once it is durable. After a failed write or sync the
// segment's state is unknown, so it is abandoned. g.mu is held.
func (s *Store) segmentWrite(ctx context.Context, data []byte) (id, off int64, err error) {
	g := &s.seg
	if g.cur != nil && g.size+int64(len(data)) > segmentMax {
		g.abandon()
	}
	if g.cur == nil {
		if err := s.startSegment(ctx); err != nil {
			return 0, 0, err
		}
	}
	if _, err := g.cur.WriteAt(data, g.size); err != nil {
		g.abandon()
		return 0, 0, fmt.Errorf("audit log: segment: %w", err)
	}
	if err := g.cur.Sync(); err != nil {
		g.abandon()
		return 0, 0, fmt.Errorf("audit log: segment: %w", err)
	}
	off = g.size
	g.size += int64(len(data))
	return g.id, off, nil
}

// abandon stops appending to the current segment. It stays open, and so
// locked, while appends to it are in flight. g.mu is held.
func (g *segments) abandon() {
	switch {
	case g.cur == nil:
	case g.busy(g.id):
		g.retired[g.id] = g.cur
	default:
		g.cur.Close()
	}
	g.cur, g.id, g.size = nil, 0, 0
}

// startSegment registers a new segment and creates its file, locked and
// durable (its directory entry too) before any extent can name it. g.mu is
// held.
func (s *Store) startSegment(ctx context.Context) error {
	g := &s.seg
	var id int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO log_segments (created) VALUES (?)`, ts(time.Now()))
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return err
	}
	if !g.dirSynced {
		if err := os.MkdirAll(g.dir, 0o700); err != nil {
			return fmt.Errorf("audit log: segments: %w", err)
		}
		if err := durable.SyncDir(filepath.Dir(g.dir)); err != nil {
			return fmt.Errorf("audit log: segments: %w", err)
		}
		g.dirSynced = true
	}
	f, err := os.OpenFile(g.name(id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: segment: %w", err)
	}
	err = flock.TryLock(f)
	if err == nil {
		_, err = f.WriteAt(binary.BigEndian.AppendUint64([]byte(segmentMagic), uint64(id)), 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = durable.SyncDir(g.dir)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("audit log: segment: %w", err)
	}
	g.cur, g.id, g.size = f, id, segmentHeader
	if g.inflight == nil {
		g.inflight = make(map[segPos]bool)
		g.retired = make(map[int64]*os.File)
	}
	return nil
}

// readExtent returns length bytes at off in segment id.
func (g *segments) readExtent(id, off, length int64) ([]byte, error) {
	f, done, err := g.reader(id)
	if err != nil {
		return nil, err
	}
	defer done()
	b := make([]byte, length)
	if _, err := f.ReadAt(b, off); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("audit log: segment %d at %d: %w", id, off, err)
	}
	return b, nil
}

// reader returns segment id's file, opened for reading and checked to be
// that segment, and the function to call once the read is done.
func (g *segments) reader(id int64) (*os.File, func(), error) {
	g.rmu.Lock()
	defer g.rmu.Unlock()
	if f := g.readers[id]; f != nil {
		return f, func() {}, nil
	}
	f, err := os.Open(g.name(id))
	if err != nil {
		return nil, nil, fmt.Errorf("audit log: segment %d: %w", id, err)
	}
	var h [segmentHeader]byte
	if _, err := f.ReadAt(h[:], 0); err != nil || string(h[:len(segmentMagic)]) != segmentMagic ||
		binary.BigEndian.Uint64(h[len(segmentMagic):]) != uint64(id) {
		f.Close()
		return nil, nil, fmt.Errorf("audit log: %s is not segment %d", g.name(id), id)
	}
	if len(g.readers) >= maxReaders || g.closed {
		return f, func() { f.Close() }, nil
	}
	if g.readers == nil {
		g.readers = make(map[int64]*os.File)
	}
	g.readers[id] = f
	return f, func() {}, nil
}

// dropReader closes the cached reader of segment id. A read under way on
// it fails, and the caller reads again.
func (g *segments) dropReader(id int64) {
	g.rmu.Lock()
	defer g.rmu.Unlock()
	if f := g.readers[id]; f != nil {
		f.Close()
		delete(g.readers, id)
	}
}

func (g *segments) close() {
	g.mu.Lock()
	if g.cur != nil {
		g.cur.Close()
	}
	for id, f := range g.retired {
		f.Close()
		delete(g.retired, id)
	}
	g.cur, g.id, g.size = nil, 0, 0
	g.mu.Unlock()
	g.rmu.Lock()
	g.closed = true
	for id, f := range g.readers {
		f.Close()
		delete(g.readers, id)
	}
	g.rmu.Unlock()
}

// pruneExtents deletes, in tx, the extents wholly below before and cuts the
// one that straddles it.
func (s *Store) pruneExtents(ctx context.Context, tx *sql.Tx, before uint64) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM log_extents WHERE first < ? AND first + count <= ?`, int64(before), int64(before)); err != nil {
		return err
	}
	var first, count, id, off, length int64
	err := tx.QueryRowContext(ctx, `SELECT first, count, segment, "offset", length FROM log_extents WHERE first < ? AND first + count > ?`,
		int64(before), int64(before)).Scan(&first, &count, &id, &off, &length)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	data, err := s.seg.readExtent(id, off, length)
	if err != nil {
		return err
	}
	skip, err := skipEntries(data, before-uint64(first))
	if err != nil {
		return fmt.Errorf("audit log: extent at %d: %w", first, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM log_extents WHERE first = ?`, first); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO log_extents (first, count, segment, "offset", length) VALUES (?, ?, ?, ?, ?)`,
		int64(before), count-int64(before-uint64(first)), id, off+int64(skip), length-int64(skip))
	return err
}

// skipEntries returns the length of the first n entries of data.
func skipEntries(data []byte, n uint64) (int, error) {
	off := 0
	for range n {
		if len(data)-off < 2 || len(data)-off < 2+entryLen(data[off:]) {
			return 0, errors.New("damaged")
		}
		off += 2 + entryLen(data[off:])
	}
	return off, nil
}

// tidySegments removes pruned bytes from segment files after a prune: in
// each segment it punches out (or zeroes) everything below the lowest
// remaining extent, and it deletes a segment no extent names once no
// process holds it, and any segment file whose segment was deleted.
func (s *Store) tidySegments(ctx context.Context) error {
	g := &s.seg
	g.mu.Lock()
	defer g.mu.Unlock()
	type seg struct {
		id, created int64
		low         sql.NullInt64
	}
	segs, err := queryAll(ctx, s, func(r scanner) (seg, error) {
		var sg seg
		err := r.Scan(&sg.id, &sg.created, &sg.low)
		return sg, err
	}, `SELECT id, created, (SELECT MIN("offset") FROM log_extents e WHERE e.segment = s.id) FROM log_segments s ORDER BY id`)
	if err != nil {
		return err
	}
	if g.wiped == nil {
		g.wiped = make(map[int64]int64)
	}
	var errs []error
	known := make(map[int64]bool)
	var last int64
	for _, sg := range segs {
		known[sg.id], last = true, sg.id
		end := sg.low.Int64
		if f := g.own(sg.id); f != nil {
			// Ours: below its remaining extents and appends in flight.
			if !sg.low.Valid {
				end = g.size
				if sg.id != g.id {
					end = math.MaxInt64
				}
			}
			for k := range g.inflight {
				if k.id == sg.id {
					end = min(end, k.off)
				}
			}
			errs = append(errs, g.wipe(f, sg.id, end))
			continue
		}
		switch {
		case sg.low.Valid:
			errs = append(errs, s.wipeSegment(sg.id, end))
		case time.Since(tm(sg.created)) >= segmentMinAge:
			errs = append(errs, s.removeSegment(ctx, sg.id))
		}
	}
	// Files of deleted segments (a crash between deleting the row and the
	// file). A segment registered since the query has a larger id.
	files, err := os.ReadDir(g.dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range files {
		var id int64
		if _, err := fmt.Sscanf(e.Name(), "%016x.seg", &id); err != nil || e.Name() != filepath.Base(g.name(id)) || known[id] || id > last {
			continue
		}
		errs = append(errs, s.removeFile(id))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("audit log: tidy segments: %w", err)
	}
	return nil
}

// own returns the open file of segment id if this process holds it. g.mu
// is held.
func (g *segments) own(id int64) *os.File {
	if g.cur != nil && id == g.id {
		return g.cur
	}
	return g.retired[id]
}

// wipe removes the bytes of segment id's file f below end (to its end if
// end is math.MaxInt64) unless that was done already. g.mu is held.
func (g *segments) wipe(f *os.File, id, end int64) error {
	if end == math.MaxInt64 {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		end = fi.Size()
	}
	if end <= max(g.wiped[id], segmentHeader) {
		return nil
	}
	if err := wipe(f, max(g.wiped[id], segmentHeader), end); err != nil {
		return err
	}
	g.wiped[id] = end
	return nil
}

// wipeSegment removes the bytes below end from another process's segment.
func (s *Store) wipeSegment(id, end int64) error {
	if end <= max(s.seg.wiped[id], segmentHeader) {
		return nil
	}
	f, err := os.OpenFile(s.seg.name(id), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil // deleted by another process's prune
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return s.seg.wipe(f, id, end)
}

// removeSegment deletes a segment no extent names, unless a process holds
// it (and may be about to commit its first extent): it wipes the file,
// deletes the segment's row, then the file. No extent can name it once it
// is wiped: only its holder adds extents, and it holds the lock while
// any are being committed.
func (s *Store) removeSegment(ctx context.Context, id int64) error {
	if !flock.Supported {
		return nil // a holder cannot be told from a leftover here
	}
	f, err := os.OpenFile(s.seg.name(id), os.O_RDWR, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		defer f.Close()
		if err := flock.TryLock(f); errors.Is(err, flock.ErrHeld) {
			return nil
		} else if err != nil {
			return err
		}
		if err := s.seg.wipe(f, id, math.MaxInt64); err != nil {
			return err
		}
	}
	// The row goes only if no extent names it (a check, given the lock).
	var deleted int64
	err = s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM log_segments WHERE id = ? AND NOT EXISTS (SELECT 1 FROM log_extents WHERE segment = ?)`, id, id)
		if err != nil {
			return err
		}
		deleted, err = res.RowsAffected()
		return err
	})
	if err != nil || deleted == 0 {
		return err
	}
	return s.seg.remove(id)
}

// remove deletes segment id's file, which the caller holds or knows no
// process holds.
func (g *segments) remove(id int64) error {
	g.dropReader(id)
	delete(g.wiped, id)
	if err := os.Remove(g.name(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// removeFile deletes the file of a deleted segment, unless a process holds
// it.
func (s *Store) removeFile(id int64) error {
	if !flock.Supported {
		return nil
	}
	name := s.seg.name(id)
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := flock.TryLock(f); errors.Is(err, flock.ErrHeld) {
		return nil
	} else if err != nil {
		return err
	}
	return s.seg.remove(id)
}

// wipe removes the bytes of f in [from, to), punching a hole where the
// file system can and writing zeros where it cannot, and syncs f.
func wipe(f *os.File, from, to int64) error {
	if f == nil || to <= from {
		return nil
	}
	if err := punchHole(f, from, to-from); err != nil {
		zeros := make([]byte, 1<<20)
		for off := from; off < to; off += int64(len(zeros)) {
			n := min(int64(len(zeros)), to-off)
			if _, err := f.WriteAt(zeros[:n], off); err != nil {
				return err
			}
		}
	}
	return f.Sync()
}
