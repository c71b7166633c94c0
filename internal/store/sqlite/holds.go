package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/custos-dev/custos/internal/store"
)

// Every write to holds or retention policy stores the audit event that
// records it (ev, already encoded) in the event outbox in the same
// transaction, so the change and its record are one: FlushOutbox moves
// the events into the audit log.

// RetentionState returns the holds, the retention policies and their
// version, from one consistent snapshot.
func (s *Store) RetentionState(ctx context.Context) (store.RetentionState, error) {
	var st store.RetentionState
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return st, err
	}
	defer tx.Rollback()
	var version int64
	if err := tx.QueryRowContext(ctx, `SELECT version FROM retention_state WHERE id = 1`).Scan(&version); err != nil {
		return st, err
	}
	st.Version = uint64(version)
	rows, err := tx.QueryContext(ctx, `SELECT id, time_from, time_until, classes, reason, created_by, created_at,
		release_requested_at, release_effective_at, released_by, release_reason, release_recorded
		FROM audit_holds ORDER BY created_at, id`)
	if err != nil {
		return st, err
	}
	defer rows.Close()
	for rows.Next() {
		var h store.Hold
		var from, until, created, req, eff, recorded int64
		var classes string
		if err := rows.Scan(&h.ID, &from, &until, &classes, &h.Reason, &h.CreatedBy, &created,
			&req, &eff, &h.ReleasedBy, &h.ReleaseReason, &recorded); err != nil {
			return st, err
		}
		if h.Classes, err = parseList(classes); err != nil {
			return st, fmt.Errorf("hold %q: classes: %w", h.ID, err)
		}
		if len(h.Classes) == 0 {
			h.Classes = nil
		}
		h.From, h.Until, h.CreatedAt = tm(from), tm(until), tm(created)
		h.ReleaseRequestedAt, h.ReleaseEffectiveAt, h.ReleaseRecorded = tm(req), tm(eff), recorded != 0
		st.Holds = append(st.Holds, h)
	}
	if err := rows.Err(); err != nil {
		return st, err
	}
	prows, err := tx.QueryContext(ctx, `SELECT class, retention, set_by, set_reason, set_at,
		pending, pending_by, pending_reason, pending_at, pending_effective_at FROM audit_retention ORDER BY class`)
	if err != nil {
		return st, err
	}
	defer prows.Close()
	for prows.Next() {
		var p store.RetentionPolicy
		var ret, setAt, pending, pendingAt, pendingEff int64
		if err := prows.Scan(&p.Class, &ret, &p.SetBy, &p.SetReason, &setAt,
			&pending, &p.PendingBy, &p.PendingReason, &pendingAt, &pendingEff); err != nil {
			return st, err
		}
		p.Retention, p.SetAt = time.Duration(ret), tm(setAt)
		p.Pending, p.PendingAt, p.PendingEffectiveAt = time.Duration(pending), tm(pendingAt), tm(pendingEff)
		st.Policies = append(st.Policies, p)
	}
	return st, prows.Err()
}

func bumpRetention(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `UPDATE retention_state SET version = version + 1 WHERE id = 1`)
	return err
}

func addOutbox(ctx context.Context, tx *sql.Tx, ev []byte) error {
	if len(ev) == 0 {
		return errors.New("sqlite: a retention change needs the event that records it")
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO event_outbox (data) VALUES (?)`, ev)
	return err
}

// InsertHold stores a new legal hold and the event ev that records it;
// store.ErrConflict if a hold with that id exists.
func (s *Store) InsertHold(ctx context.Context, h store.Hold, ev []byte) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO audit_holds (id, time_from, time_until, classes, reason, created_by, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, h.ID, ts(h.From), ts(h.Until), jsonList(h.Classes), h.Reason, h.CreatedBy, ts(h.CreatedAt))
		if isUnique(err) {
			return fmt.Errorf("hold %q: %w", h.ID, store.ErrConflict)
		}
		if err != nil {
			return err
		}
		if err := bumpRetention(ctx, tx); err != nil {
			return err
		}
		return addOutbox(ctx, tx, ev)
	})
}

// RequestHoldRelease records a request to release hold r.ID, and the event
// ev that records it. It fails with store.ErrNotFound if there is no such
// hold and store.ErrConflict if its release was requested already.
func (s *Store) RequestHoldRelease(ctx context.Context, r store.HoldRelease, ev []byte) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE audit_holds SET release_requested_at = ?, release_effective_at = ?, released_by = ?, release_reason = ?
			WHERE id = ? AND release_requested_at = 0`, ts(r.RequestedAt), ts(r.EffectiveAt), r.By, r.Reason, r.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return holdMissingOrConflict(ctx, tx, r.ID, "release already requested")
		}
		if err := bumpRetention(ctx, tx); err != nil {
			return err
		}
		return addOutbox(ctx, tx, ev)
	})
}

// RecordHoldReleased marks hold id's release as recorded, with the event ev
// that records it. It fails with store.ErrNotFound if there is no such hold
// and store.ErrConflict if no release was requested or it is recorded
// already: each release is recorded once.
func (s *Store) RecordHoldReleased(ctx context.Context, id string, ev []byte) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE audit_holds SET release_recorded = 1
			WHERE id = ? AND release_requested_at <> 0 AND release_recorded = 0`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return holdMissingOrConflict(ctx, tx, id, "no release to record")
		}
		if err := bumpRetention(ctx, tx); err != nil {
			return err
		}
		return addOutbox(ctx, tx, ev)
	})
}

func holdMissingOrConflict(ctx context.Context, tx *sql.Tx, id, conflict string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM audit_holds WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("hold %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("hold %q: %s: %w", id, conflict, store.ErrConflict)
}

// SetRetention stores p as its class's retention policy, and the event ev
// that records the change, if the retention state is still at version;
// otherwise it fails with store.ErrConflict and changes nothing.
func (s *Store) SetRetention(ctx context.Context, version uint64, p store.RetentionPolicy, ev []byte) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE retention_state SET version = version + 1 WHERE id = 1 AND version = ?`, int64(version))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("retention of %q: %w", p.Class, store.ErrConflict)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO audit_retention (class, retention, set_by, set_reason, set_at,
				pending, pending_by, pending_reason, pending_at, pending_effective_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (class) DO UPDATE SET retention = excluded.retention, set_by = excluded.set_by,
				set_reason = excluded.set_reason, set_at = excluded.set_at, pending = excluded.pending,
				pending_by = excluded.pending_by, pending_reason = excluded.pending_reason,
				pending_at = excluded.pending_at, pending_effective_at = excluded.pending_effective_at`,
			p.Class, int64(p.Retention), p.SetBy, p.SetReason, ts(p.SetAt),
			int64(p.Pending), p.PendingBy, p.PendingReason, ts(p.PendingAt), ts(p.PendingEffectiveAt))
		if err != nil {
			return err
		}
		return addOutbox(ctx, tx, ev)
	})
}

// PruneLog deletes the bodies of audit-log entries below index before and
// records before as the pruning point, with the event ev that records the
// prune — if the retention state is still at version (no hold was placed
// or policy changed since the caller decided), before is not below the
// pruning point and not beyond the integrated tree. Otherwise it fails
// with store.ErrConflict and changes nothing. A chunk that straddles
// before is cut so that no body below it remains; hashes (tiles) and
// checkpoints are kept.
func (s *Store) PruneLog(ctx context.Context, version, before uint64, ev []byte) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var v int64
		if err := tx.QueryRowContext(ctx, `SELECT version FROM retention_state WHERE id = 1`).Scan(&v); err != nil {
			return err
		}
		if uint64(v) != version {
			return fmt.Errorf("audit log: prune to %d: holds or retention changed: %w", before, store.ErrConflict)
		}
		res, err := tx.ExecContext(ctx, `UPDATE log_state SET pruned = ? WHERE id = 1 AND pruned <= ? AND integrated >= ?`, int64(before), int64(before), int64(before))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("audit log: prune to %d: %w", before, store.ErrConflict)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM log_entries WHERE first + count <= ?`, int64(before)); err != nil {
			return err
		}
		if err := cutChunk(ctx, tx, before); err != nil {
			return err
		}
		if err := s.pruneExtents(ctx, tx, before); err != nil {
			return err
		}
		return addOutbox(ctx, tx, ev)
	})
	if err != nil {
		return err
	}
	s.tidyAfterPrune(ctx)
	return nil
}

// cutChunk replaces the chunk holding entries on both sides of before by
// one holding only the entries from before on.
func cutChunk(ctx context.Context, tx *sql.Tx, before uint64) error {
	var first, count int64
	var data []byte
	err := tx.QueryRowContext(ctx, `SELECT first, count, data FROM log_entries WHERE first < ? AND first + count > ?`,
		int64(before), int64(before)).Scan(&first, &count, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	skip := before - uint64(first)
	off := 0
	for range skip {
		if len(data)-off < 2 {
			return fmt.Errorf("audit log: chunk at %d is damaged", first)
		}
		n := int(data[off])<<8 | int(data[off+1])
		if len(data)-off < 2+n {
			return fmt.Errorf("audit log: chunk at %d is damaged", first)
		}
		off += 2 + n
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM log_entries WHERE first = ?`, first); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO log_entries (first, count, data) VALUES (?, ?, ?)`,
		int64(before), count-int64(skip), data[off:])
	return err
}

// PendingEvents returns up to limit events of the outbox, oldest first.
func (s *Store) PendingEvents(ctx context.Context, limit int) ([]store.OutboxEvent, error) {
	rows, err := s.query(ctx, `SELECT seq, data FROM event_outbox ORDER BY seq LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.OutboxEvent
	for rows.Next() {
		var e store.OutboxEvent
		var seq int64
		if err := rows.Scan(&seq, &e.Data); err != nil {
			return nil, err
		}
		e.Seq = uint64(seq)
		out = append(out, e)
	}
	return out, rows.Err()
}

// FlushOutbox moves up to limit events from the outbox, oldest first, into
// the audit log, in one transaction: each is appended exactly once. It
// returns how many it moved.
func (s *Store) FlushOutbox(ctx context.Context, limit int) (int, error) {
	var n int
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT seq, data FROM event_outbox ORDER BY seq LIMIT ?`, limit)
		if err != nil {
			return err
		}
		var last int64
		var events [][]byte
		for rows.Next() {
			var data []byte
			if err := rows.Scan(&last, &data); err != nil {
				rows.Close()
				return err
			}
			events = append(events, data)
		}
		rows.Close()
		if err := rows.Err(); err != nil || len(events) == 0 {
			return err
		}
		if err := s.appendEvents(ctx, tx, events); err != nil {
			return err
		}
		// The writer is the only one writing, so the outbox holds no
		// event below last that was not read above.
		if _, err := tx.ExecContext(ctx, `DELETE FROM event_outbox WHERE seq <= ?`, last); err != nil {
			return err
		}
		n = len(events)
		return nil
	})
	return n, err
}
