package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

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
// long as it is appended to, and starts a new one when it reaches
// segmentMax or after a failed write. Appends from one process are
// serialised through their commit, so within a segment the extents' offsets
// grow with their indexes. Pruning deletes extents, punches out the bytes
// below a segment's lowest remaining extent, and deletes a segment no extent
// names once no process holds it.
const (
	// inlineBytes is the largest commit kept in the database: a few
	// events, where a second fsync would cost more than it saves.
	inlineBytes = 16 << 10
	// segmentMax is the size past which a process starts a new segment.
	segmentMax = 256 << 20
	// segmentMinAge keeps pruning from deleting a segment so young that
	// the process that registered it may not have created its file yet.
	segmentMinAge = time.Hour
	// SegmentsSuffix names the segment directory: the database file's
	// path with this suffix.
	SegmentsSuffix = "-segments"
)

// segmentHeader begins every segment file; extents start after it.
const segmentHeader = "custos-segment1\n"

// segments is a Store's segment files.
type segments struct {
	dir string

	// mu serialises this process's segment appends, each through the
	// commit of its extents, and pruning's clean-up.
	mu   sync.Mutex
	cur  *os.File // the segment being appended to, locked; nil before the first
	id   int64
	size int64
	// inflight holds the offsets in cur of appends whose extents are not
	// yet committed (or failed), which pruning must leave alone.
	inflight map[int64]bool

	rmu     sync.Mutex
	readers map[int64]*os.File
}

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
	g.inflight[off] = true
	g.mu.Unlock()
	err = <-errc
	g.mu.Lock()
	delete(g.inflight, off)
	g.mu.Unlock()
	return first, err
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

func (g *segments) abandon() {
	if g.cur != nil {
		g.cur.Close()
	}
	g.cur, g.id, g.size = nil, 0, 0
}

// startSegment registers a new segment and creates its file, locked and
// durable (the directory entry too) before any extent can name it.
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
	if err := os.MkdirAll(g.dir, 0o700); err != nil {
		return fmt.Errorf("audit log: segments: %w", err)
	}
	f, err := os.OpenFile(g.name(id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: segment: %w", err)
	}
	err = flock.TryLock(f)
	if err == nil {
		_, err = f.WriteAt([]byte(segmentHeader), 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(g.dir)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("audit log: segment: %w", err)
	}
	g.cur, g.id, g.size = f, id, int64(len(segmentHeader))
	g.inflight = make(map[int64]bool)
	return nil
}

// syncDir makes the directory's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readExtent returns length bytes at off in segment id.
func (g *segments) readExtent(id, off, length int64) ([]byte, error) {
	f, err := g.reader(id)
	if err != nil {
		return nil, err
	}
	b := make([]byte, length)
	if _, err := f.ReadAt(b, off); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("audit log: segment %d at %d: %w", id, off, err)
	}
	return b, nil
}

func (g *segments) reader(id int64) (*os.File, error) {
	g.rmu.Lock()
	defer g.rmu.Unlock()
	if f := g.readers[id]; f != nil {
		return f, nil
	}
	f, err := os.Open(g.name(id))
	if err != nil {
		return nil, fmt.Errorf("audit log: segment %d: %w", id, err)
	}
	if g.readers == nil {
		g.readers = make(map[int64]*os.File)
	}
	g.readers[id] = f
	return f, nil
}

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
	g.abandon()
	g.mu.Unlock()
	g.rmu.Lock()
	for id, f := range g.readers {
		f.Close()
		delete(g.readers, id)
	}
	g.rmu.Unlock()
}

// pruneExtents deletes, in tx, the extents wholly below before and cuts the
// one that straddles it.
func (s *Store) pruneExtents(ctx context.Context, tx *sql.Tx, before uint64) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM log_extents WHERE first + count <= ?`, int64(before)); err != nil {
		return err
	}
	var first, count, id, off, length int64
	err := tx.QueryRowContext(ctx, `SELECT first, count, segment, offset, length FROM log_extents WHERE first < ? AND first + count > ?`,
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
	_, err = tx.ExecContext(ctx, `INSERT INTO log_extents (first, count, segment, offset, length) VALUES (?, ?, ?, ?, ?)`,
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
// process holds it.
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
	}, `SELECT id, created, (SELECT MIN(offset) FROM log_extents e WHERE e.segment = s.id) FROM log_segments s ORDER BY id`)
	if err != nil {
		return err
	}
	var errs []error
	for _, sg := range segs {
		if sg.id == g.id {
			end := g.size
			if sg.low.Valid {
				end = sg.low.Int64
			}
			for off := range g.inflight {
				end = min(end, off)
			}
			errs = append(errs, wipe(g.cur, int64(len(segmentHeader)), end))
			continue
		}
		if sg.low.Valid {
			errs = append(errs, s.wipeSegment(sg.id, sg.low.Int64))
			continue
		}
		if time.Since(tm(sg.created)) < segmentMinAge {
			continue
		}
		errs = append(errs, s.removeSegment(ctx, sg.id))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("audit log: tidy segments: %w", err)
	}
	return nil
}

// wipeSegment removes the bytes below end from another segment.
func (s *Store) wipeSegment(id, end int64) error {
	f, err := os.OpenFile(s.seg.name(id), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil // deleted by another process's prune
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return wipe(f, int64(len(segmentHeader)), end)
}

// removeSegment deletes a segment no extent names, unless a process holds
// it (and may be about to commit its first extent).
func (s *Store) removeSegment(ctx context.Context, id int64) error {
	name := s.seg.name(id)
	f, err := os.OpenFile(name, os.O_RDWR, 0)
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
	}
	// An extent committed since the caller looked keeps the segment.
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
	s.seg.dropReader(id)
	if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
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
