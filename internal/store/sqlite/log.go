package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store"
)

// InitLog creates the audit log named origin if there is none, and returns
// the log's state. An existing log keeps its origin.
func (s *Store) InitLog(ctx context.Context, origin string) (store.LogState, error) {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO log_state (id, origin, sequenced, integrated, pruned) VALUES (1, ?, 0, 0, 0) ON CONFLICT (id) DO NOTHING`, origin)
		return err
	})
	if err != nil {
		return store.LogState{}, err
	}
	return s.LogState(ctx)
}

// LogState returns the audit log's state; store.ErrNotFound before InitLog.
func (s *Store) LogState(ctx context.Context) (store.LogState, error) {
	var st store.LogState
	var seq, integ, pruned int64
	err := s.queryRow(ctx, `SELECT origin, sequenced, integrated, pruned, checkpoint FROM log_state WHERE id = 1`).
		Scan(&st.Origin, &seq, &integ, &pruned, &st.Checkpoint)
	if errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("audit log: %w", store.ErrNotFound)
	}
	st.Sequenced, st.Integrated, st.Pruned = uint64(seq), uint64(integ), uint64(pruned)
	return st, err
}

const (
	qSequence    = `UPDATE log_state SET sequenced = ? WHERE id = 1 AND sequenced = ?`
	qInsertChunk = `INSERT OR FAIL INTO log_entries (first, count, data) VALUES (?, ?, ?)`
	// Appending reads the size and then sets it, rather than one UPDATE
	// ... RETURNING: RETURNING builds an ephemeral table, whose memory
	// the driver's allocator maps and unmaps on every append. The write
	// transaction holds the database's write lock, so nothing can append
	// in between.
	qLogSize   = `SELECT sequenced FROM log_state WHERE id = 1`
	qAppendSeq = `UPDATE OR FAIL log_state SET sequenced = ? WHERE id = 1`
	// qInsertExtent records entries stored in a segment file.
	qInsertExtent = `INSERT OR FAIL INTO log_extents (first, count, segment, "offset", length) VALUES (?, ?, ?, ?, ?)`
)

// AppendChunk stores count entries (data is their concatenation, each with
// a two-byte big-endian length) as the log's next entries, and returns the
// index of the first. The indexes are assigned inside the write's
// transaction, so appends from any number of writers never conflict.
// Chunks over inlineBytes are stored in a segment file (see segments.go).
func (s *Store) AppendChunk(ctx context.Context, count uint64, data []byte) (uint64, error) {
	if len(data) > inlineBytes {
		return s.appendSegment(ctx, count, data)
	}
	var first uint64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		first, err = s.appendChunk(ctx, tx, count, data)
		return err
	})
	return first, err
}

func (s *Store) appendChunk(ctx context.Context, tx *sql.Tx, count uint64, data []byte) (uint64, error) {
	first, err := s.nextIndexes(ctx, tx, count)
	if err != nil {
		return 0, err
	}
	// The chunk is stored in rows of at most rowBytes: the driver and
	// SQLite copy a row's blob into memory they allocate per row, and
	// small rows reuse that memory where large ones map and fault in
	// fresh pages every time.
	idx := first
	for len(data) > 0 {
		n, k := 0, uint64(0)
		for n < len(data) && (k == 0 || n+2+entryLen(data[n:]) <= rowBytes) {
			n += 2 + entryLen(data[n:])
			k++
		}
		if n > len(data) || idx+k > first+count {
			return 0, errors.New("audit log: malformed chunk")
		}
		if _, err := s.exec(ctx, tx, qInsertChunk, int64(idx), int64(k), data[:n]); err != nil {
			return 0, err
		}
		data, idx = data[n:], idx+k
	}
	if idx != first+count {
		return 0, errors.New("audit log: malformed chunk")
	}
	return first, nil
}

// nextIndexes takes the log's next count indexes in tx and returns the
// first.
func (s *Store) nextIndexes(ctx context.Context, tx *sql.Tx, count uint64) (uint64, error) {
	var size int64
	err := tx.StmtContext(ctx, s.prepared[qLogSize]).QueryRowContext(ctx).Scan(&size)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("audit log: not created: %w", store.ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	if _, err := s.exec(ctx, tx, qAppendSeq, size+int64(count)); err != nil {
		return 0, err
	}
	return uint64(size), nil
}

// rowBytes bounds a log_entries row's data (a row holds at least one
// entry): with 4 KiB pages, such a row fits on its leaf page.
const rowBytes = 4000

// entryLen reads the two-byte length at the start of b.
func entryLen(b []byte) int {
	if len(b) < 2 {
		return len(b) // makes the caller's bounds check fail
	}
	return int(b[0])<<8 | int(b[1])
}

// appendEvents appends a grant's events as one chunk in tx.
func (s *Store) appendEvents(ctx context.Context, tx *sql.Tx, events [][]byte) error {
	if len(events) == 0 {
		return nil
	}
	data, err := auditlog.AppendEntryBundle(nil, events...)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	_, err = s.appendChunk(ctx, tx, uint64(len(events)), data)
	return err
}

// Sequence stores chunk c as entries [c.First, c.First+c.Count) if the log
// holds exactly c.First entries; otherwise it fails with store.ErrConflict
// and changes nothing.
func (s *Store) Sequence(ctx context.Context, c store.Chunk) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, qSequence, int64(c.First+c.Count), int64(c.First))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("audit log: sequence from %d: %w", c.First, store.ErrConflict)
		}
		_, err = s.exec(ctx, tx, qInsertChunk, int64(c.First), int64(c.Count), c.Data)
		return err
	})
}

// Chunks returns the stored chunks that hold entries in [from, to), in
// order, whether their bytes are in the database or in a segment file.
// Chunks deleted by pruning are missing; the caller checks coverage.
func (s *Store) Chunks(ctx context.Context, from, to uint64) ([]store.Chunk, error) {
	// Segment bytes are read after the query's read transaction. A prune
	// may cut or delete an extent in between, and wipe its bytes or delete
	// its file; the extents are then looked up again, and read again if
	// they changed. An extent still there after its bytes were read was
	// there throughout, and pruning wipes only bytes no extent names.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		out, changed, err := s.chunks(ctx, from, to)
		if !changed || attempt == attempts {
			if changed {
				err = errors.New("audit log: extents kept changing while read")
			}
			return out, err
		}
	}
}

func (s *Store) chunks(ctx context.Context, from, to uint64) (out []store.Chunk, changed bool, err error) {
	rows, err := s.query(ctx, qChunks, int64(from), int64(to))
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var extents []extent
	for rows.Next() {
		var c store.Chunk
		var first, count int64
		var id, off, length sql.NullInt64
		if err := rows.Scan(&first, &count, &c.Data, &id, &off, &length); err != nil {
			return nil, false, err
		}
		c.First, c.Count = uint64(first), uint64(count)
		if c.First+c.Count <= from {
			continue
		}
		if id.Valid {
			extents = append(extents, extent{len(out), first, id.Int64, off.Int64, length.Int64})
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	rows.Close()
	if len(extents) == 0 {
		return out, false, nil
	}
	var readErr error
	for _, e := range extents {
		if out[e.i].Data, readErr = s.seg.readExtent(e.id, e.off, e.length); readErr != nil {
			break
		}
	}
	same, err := s.extentsUnchanged(ctx, extents)
	if err != nil {
		return nil, false, err
	}
	if !same {
		return nil, true, nil
	}
	return out, false, readErr
}

// extent is a log_extents row Chunks read, for chunk i of its result.
type extent struct {
	i                      int
	first, id, off, length int64
}

// extentsUnchanged reports whether the extents are all still stored as
// they were read.
func (s *Store) extentsUnchanged(ctx context.Context, extents []extent) (bool, error) {
	rows, err := s.query(ctx, `SELECT first, segment, "offset", length FROM log_extents WHERE first >= ? AND first <= ? ORDER BY first`,
		extents[0].first, extents[len(extents)-1].first)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var e extent
		if err := rows.Scan(&e.first, &e.id, &e.off, &e.length); err != nil {
			return false, err
		}
		if i >= len(extents) {
			break // one appended since is not one changed
		}
		w := extents[i]
		if e.first != w.first || e.id != w.id || e.off != w.off || e.length != w.length {
			return false, nil
		}
		i++
	}
	return i == len(extents), rows.Err()
}

// qChunks reads the chunks and extents from the one holding from (the last
// to start at or before it) up to to.
const qChunks = `SELECT first, count, data, NULL, NULL, NULL FROM log_entries
		WHERE first >= COALESCE((SELECT MAX(first) FROM log_entries WHERE first <= ?1), 0) AND first < ?2
	UNION ALL
	SELECT first, count, NULL, segment, "offset", length FROM log_extents
		WHERE first >= COALESCE((SELECT MAX(first) FROM log_extents WHERE first <= ?1), 0) AND first < ?2
	ORDER BY first`

// Integrate stores the tiles and checkpoint of one integration step if the
// tree still has size from; otherwise it fails with store.ErrConflict.
func (s *Store) Integrate(ctx context.Context, from uint64, in store.Integration) error {
	tiles, err := s.putFullTiles(ctx, in.Tiles)
	if err != nil {
		return err
	}
	full := s.tiles.takeFull()
	err = s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE log_state SET integrated = ?, checkpoint = ? WHERE id = 1 AND integrated = ? AND sequenced >= ?`,
			int64(in.Size), in.Checkpoint, int64(from), int64(in.Size))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("audit log: integrate from %d: %w", from, store.ErrConflict)
		}
		if err := s.putTileParts(ctx, tx, tiles); err != nil {
			return err
		}
		if err := deleteGrowing(ctx, tx, full); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO log_checkpoints (size, time, note) VALUES (?, ?, ?)`, int64(in.Size), ts(in.Time), in.Checkpoint)
		if isUnique(err) {
			return fmt.Errorf("audit log: checkpoint for size %d exists: %w", in.Size, store.ErrConflict)
		}
		return err
	})
	if err != nil {
		s.tiles.returnFull(full)
		return err
	}
	s.tiles.sawIntegrated(int64(in.Size))
	return nil
}

// Checkpoints returns up to limit signed checkpoints with size > after, in
// order of size.
func (s *Store) Checkpoints(ctx context.Context, after uint64, limit int) ([]store.LogCheckpoint, error) {
	rows, err := s.query(ctx, `SELECT size, time, note FROM log_checkpoints WHERE size > ? ORDER BY size LIMIT ?`, int64(after), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.LogCheckpoint
	for rows.Next() {
		var c store.LogCheckpoint
		var size, t int64
		if err := rows.Scan(&size, &t, &c.Note); err != nil {
			return nil, err
		}
		c.Size, c.Time = uint64(size), tm(t)
		out = append(out, c)
	}
	return out, rows.Err()
}

// PruneEntries deletes the chunks wholly below index before and records
// before as the pruning point: bodies of entries below it may be gone.
// Tiles and checkpoints are kept. before must not be beyond the integrated
// size; the pruning point never moves back.
func (s *Store) PruneEntries(ctx context.Context, before uint64) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE log_state SET pruned = ? WHERE id = 1 AND pruned <= ? AND integrated >= ?`, int64(before), int64(before), int64(before))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("audit log: prune to %d: %w", before, store.ErrConflict)
		}
		if _, err = tx.ExecContext(ctx, `DELETE FROM log_entries WHERE first + count <= ?`, int64(before)); err != nil {
			return err
		}
		return s.pruneExtents(ctx, tx, before)
	})
	if err != nil {
		return err
	}
	s.tidyAfterPrune(ctx)
	return nil
}

// tidyAfterPrune tidies the segments after a committed prune. A failure
// does not undo the prune: it is logged, and the next prune tries again.
func (s *Store) tidyAfterPrune(ctx context.Context) {
	if err := s.tidySegments(ctx); err != nil {
		slog.Warn("audit log: pruned entries' bytes are still in segment files; the next prune tries again", "err", err)
	}
}

// InsertNoteKey stores a new note-signing key; store.ErrConflict if one
// with that name exists.
func (s *Store) InsertNoteKey(ctx context.Context, k store.NoteKey) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO note_keys (name, public, sealed, sealer, created) VALUES (?, ?, ?, ?, ?)`,
			k.Name, k.Public, k.Sealed, k.Sealer, ts(k.Created))
		if isUnique(err) {
			return fmt.Errorf("note key %q: %w", k.Name, store.ErrConflict)
		}
		return err
	})
}

// NoteKey returns the note-signing key called name.
func (s *Store) NoteKey(ctx context.Context, name string) (store.NoteKey, error) {
	k := store.NoteKey{Name: name}
	var created int64
	err := s.queryRow(ctx, `SELECT public, sealed, sealer, created FROM note_keys WHERE name = ?`, name).
		Scan(&k.Public, &k.Sealed, &k.Sealer, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return k, fmt.Errorf("note key %q: %w", name, store.ErrNotFound)
	}
	k.Created = tm(created)
	return k, err
}
