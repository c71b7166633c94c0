package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/custos-dev/custos/internal/store"
)

// DetectorState returns the named detector's state: store.ErrNotFound
// before its first SaveDetection.
func (s *Store) DetectorState(ctx context.Context, name string) (store.DetectorState, error) {
	st := store.DetectorState{Name: name}
	var next, warm, updated int64
	err := s.rdb.QueryRowContext(ctx, `SELECT next_index, warm_index, rules_sha256, updated_at FROM detector_state WHERE name = ?`, name).
		Scan(&next, &warm, &st.RulesDigest, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("detector %q: %w", name, store.ErrNotFound)
	}
	st.Next, st.Warm, st.UpdatedAt = uint64(next), uint64(warm), tm(updated)
	return st, err
}

// SaveDetection stores a detector's batch in one transaction. It fails
// with store.ErrConflict, changing nothing, if a state is stored and is not
// at d.PrevNext (another detector moved it), if a grown alert is no longer
// open (an operator acknowledged it), or if a created alert's rule and
// group already have an open alert.
func (s *Store) SaveDetection(ctx context.Context, d store.Detection) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := saveState(ctx, tx, d.State, d.PrevNext); err != nil {
			return err
		}
		for _, a := range d.Created {
			_, err := tx.ExecContext(ctx, `INSERT INTO alerts (id, rule, severity, title, group_key, state, count,
				first_index, last_index, first_at, last_at, raised_at, updated_at) VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?)`,
				a.ID, a.Rule, a.Severity, a.Title, a.Group, a.Count, int64(a.FirstIndex), int64(a.LastIndex),
				ts(a.FirstAt), ts(a.LastAt), ts(a.RaisedAt), ts(a.UpdatedAt))
			if isUnique(err) {
				return fmt.Errorf("alert %s (rule %s, group %q): %w", a.ID, a.Rule, a.Group, store.ErrConflict)
			}
			if err != nil {
				return err
			}
		}
		for _, a := range d.Grown {
			res, err := tx.ExecContext(ctx, `UPDATE alerts SET count = ?, last_index = ?, last_at = ?, updated_at = ?
				WHERE id = ? AND state = 'open'`, a.Count, int64(a.LastIndex), ts(a.LastAt), ts(a.UpdatedAt), a.ID)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return fmt.Errorf("alert %s is no longer open: %w", a.ID, store.ErrConflict)
			}
		}
		for _, dl := range d.Deliveries {
			if _, err := tx.ExecContext(ctx, `INSERT INTO alert_deliveries (alert_id, target, payload, created_at, next_at) VALUES (?, ?, ?, ?, ?)`,
				dl.AlertID, dl.Target, dl.Payload, ts(dl.CreatedAt), ts(dl.NextAt)); err != nil {
				return err
			}
		}
		return s.appendEvents(ctx, tx, d.Events)
	})
}

// saveState moves a reader of the log (a detector, the transmitter) from
// prev to st.Next.
func saveState(ctx context.Context, tx *sql.Tx, st store.DetectorState, prev uint64) error {
	res, err := tx.ExecContext(ctx, `UPDATE detector_state SET next_index = ?, warm_index = ?, rules_sha256 = ?, updated_at = ?
		WHERE name = ? AND next_index = ?`, int64(st.Next), int64(st.Warm), st.RulesDigest, ts(st.UpdatedAt), st.Name, int64(prev))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	// No row at prev: the reader's first save (wherever it started: a
	// pruned log starts past 0), or another reader's row elsewhere.
	_, err = tx.ExecContext(ctx, `INSERT INTO detector_state (name, next_index, warm_index, rules_sha256, updated_at) VALUES (?, ?, ?, ?, ?)`,
		st.Name, int64(st.Next), int64(st.Warm), st.RulesDigest, ts(st.UpdatedAt))
	if isUnique(err) {
		return fmt.Errorf("%q is not at %d: %w", st.Name, prev, store.ErrConflict)
	}
	return err
}

const deliveryCols = `id, alert_id, target, payload, created_at, attempts, next_at, delivered_at, given_up_at, last_error`

// DueDeliveries returns up to limit deliveries neither delivered nor given
// up whose next attempt is due at now, oldest first.
func (s *Store) DueDeliveries(ctx context.Context, now time.Time, limit int) ([]store.AlertDelivery, error) {
	return queryAll(ctx, s, scanDelivery, `SELECT `+deliveryCols+` FROM alert_deliveries
		WHERE delivered_at = 0 AND given_up_at = 0 AND next_at <= ? ORDER BY next_at, id LIMIT ?`, ts(now), limit)
}

func scanDelivery(sc scanner) (store.AlertDelivery, error) {
	var d store.AlertDelivery
	var created, next, delivered, gaveUp int64
	err := sc.Scan(&d.ID, &d.AlertID, &d.Target, &d.Payload, &created, &d.Attempts, &next, &delivered, &gaveUp, &d.LastError)
	d.CreatedAt, d.NextAt, d.DeliveredAt, d.GivenUpAt = tm(created), tm(next), tm(delivered), tm(gaveUp)
	return d, err
}

// RecordDelivery stores the outcome of an attempt: d's Attempts, NextAt,
// DeliveredAt, GivenUpAt and LastError. store.ErrNotFound for no such
// delivery.
func (s *Store) RecordDelivery(ctx context.Context, d store.AlertDelivery) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE alert_deliveries SET attempts = ?, next_at = ?, delivered_at = ?, given_up_at = ?, last_error = ?
			WHERE id = ?`, d.Attempts, ts(d.NextAt), ts(d.DeliveredAt), ts(d.GivenUpAt), d.LastError, d.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("alert delivery %d: %w", d.ID, store.ErrNotFound)
		}
		return nil
	})
}

const alertCols = `id, rule, severity, title, group_key, state, count, first_index, last_index, first_at, last_at,
	raised_at, updated_at, acked_by, acked_at, ack_note`

func scanAlert(sc scanner) (store.Alert, error) {
	var a store.Alert
	var state string
	var first, last, firstAt, lastAt, raised, updated, acked int64
	err := sc.Scan(&a.ID, &a.Rule, &a.Severity, &a.Title, &a.Group, &state, &a.Count, &first, &last, &firstAt, &lastAt,
		&raised, &updated, &a.AckedBy, &acked, &a.AckNote)
	a.State = store.AlertState(state)
	a.FirstIndex, a.LastIndex = uint64(first), uint64(last)
	a.FirstAt, a.LastAt, a.RaisedAt, a.UpdatedAt, a.AckedAt = tm(firstAt), tm(lastAt), tm(raised), tm(updated), tm(acked)
	return a, err
}

// Alert returns the alert with the given id.
func (s *Store) Alert(ctx context.Context, id string) (store.Alert, error) {
	a, err := scanAlert(s.rdb.QueryRowContext(ctx, `SELECT `+alertCols+` FROM alerts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("alert %q: %w", id, store.ErrNotFound)
	}
	return a, err
}

// Alerts returns the alerts f selects, the most recently raised first.
func (s *Store) Alerts(ctx context.Context, f store.AlertFilter) ([]store.Alert, error) {
	q := `SELECT ` + alertCols + ` FROM alerts WHERE (? = '' OR state = ?) AND (? = '' OR rule = ?) ORDER BY raised_at DESC, id`
	args := []any{string(f.State), string(f.State), f.Rule, f.Rule}
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	return queryAll(ctx, s, scanAlert, q, args...)
}

// AckAlert marks an open alert acknowledged and appends ev (its audit
// event, encoded) in the same transaction. store.ErrNotFound for no such
// alert; store.ErrConflict if it is not open.
func (s *Store) AckAlert(ctx context.Context, a store.Alert, ev []byte) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE alerts SET state = 'acked', acked_by = ?, acked_at = ?, ack_note = ?
			WHERE id = ? AND state = 'open'`, a.AckedBy, ts(a.AckedAt), a.AckNote, a.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var state string
			err := tx.QueryRowContext(ctx, `SELECT state FROM alerts WHERE id = ?`, a.ID).Scan(&state)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("alert %q: %w", a.ID, store.ErrNotFound)
			}
			if err != nil {
				return err
			}
			return fmt.Errorf("alert %q is %s, not open: %w", a.ID, state, store.ErrConflict)
		}
		return s.appendEvents(ctx, tx, [][]byte{ev})
	})
}

// BlockIP blocks b.IP until b.Until, or keeps a later block already there,
// and appends ev (its audit event, encoded; may be nil) in the same
// transaction.
func (s *Store) BlockIP(ctx context.Context, b store.IPBlock, ev []byte) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO ip_blocks (ip, until, reason, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (ip) DO UPDATE SET
				until = max(until, excluded.until),
				reason = CASE WHEN excluded.until > until THEN excluded.reason ELSE reason END,
				updated_at = excluded.updated_at`,
			b.IP, ts(b.Until), b.Reason, ts(b.CreatedAt), ts(b.UpdatedAt))
		if err != nil {
			return err
		}
		if ev == nil {
			return nil
		}
		return s.appendEvents(ctx, tx, [][]byte{ev})
	})
}

// IPBlocks returns the blocks in force at now, by IP.
func (s *Store) IPBlocks(ctx context.Context, now time.Time) ([]store.IPBlock, error) {
	return queryAll(ctx, s, func(sc scanner) (store.IPBlock, error) {
		var b store.IPBlock
		var until, created, updated int64
		err := sc.Scan(&b.IP, &until, &b.Reason, &created, &updated)
		b.Until, b.CreatedAt, b.UpdatedAt = tm(until), tm(created), tm(updated)
		return b, err
	}, `SELECT ip, until, reason, created_at, updated_at FROM ip_blocks WHERE until > ? ORDER BY ip`, ts(now))
}

// UnblockIP lifts the block on ip at now and appends ev in the same
// transaction; store.ErrNotFound if no block on ip is in force.
func (s *Store) UnblockIP(ctx context.Context, ip string, now time.Time, ev []byte) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM ip_blocks WHERE ip = ? AND until > ?`, ip, ts(now))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("no block on %s: %w", ip, store.ErrNotFound)
		}
		return s.appendEvents(ctx, tx, [][]byte{ev})
	})
}

// ActiveSessions returns up to limit sessions with a token alive at now,
// revoked or not: a sign-in started each of them.
func (s *Store) ActiveSessions(ctx context.Context, now time.Time, limit int) ([]string, error) {
	return queryAll(ctx, s, func(sc scanner) (sid string, err error) { return sid, sc.Scan(&sid) },
		`SELECT DISTINCT session_id FROM families WHERE expires_at > ? AND session_id != '' LIMIT ?`, ts(now), limit)
}

// PruneDeliveries deletes alert deliveries delivered or given up before
// before; it returns how many it deleted.
func (s *Store) PruneDeliveries(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM alert_deliveries WHERE (delivered_at != 0 AND delivered_at < ?) OR (given_up_at != 0 AND given_up_at < ?)`,
			ts(before), ts(before))
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return int(n), err
}
