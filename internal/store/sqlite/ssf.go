package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store"
)

const ssfStreamCols = `id, audience, delivery, endpoint, auth_env, poll_hash, events, start_index, created_at, removed_at`

// AddSSFStream registers a stream; store.ErrConflict if its id was ever
// used.
func (s *Store) AddSSFStream(ctx context.Context, st store.SSFStream, ev []byte) error {
	if st.PollHash == nil {
		st.PollHash = []byte{} // a push stream's: a blob, not NULL
	}
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		// The event first: its index is where the stream starts.
		data, err := auditlog.AppendEntryBundle(nil, ev)
		if err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		start, err := s.appendChunk(ctx, tx, 1, data)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO ssf_streams (`+ssfStreamCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)`,
			st.ID, st.Audience, st.Delivery, st.Endpoint, st.AuthEnv, st.PollHash, jsonList(st.Events), int64(start), ts(st.CreatedAt))
		if isUnique(err) {
			return fmt.Errorf("stream %q: %w", st.ID, store.ErrConflict)
		}
		return err
	})
}

// RemoveSSFStream stops a stream; its queued tokens are not sent.
// store.ErrNotFound for no live stream id.
func (s *Store) RemoveSSFStream(ctx context.Context, id string, at time.Time, ev []byte) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE ssf_streams SET removed_at = ? WHERE id = ? AND removed_at = 0`, ts(at), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("stream %q: %w", id, store.ErrNotFound)
		}
		return s.appendEvents(ctx, tx, [][]byte{ev})
	})
}

// SSFStreams returns the live streams, by id.
func (s *Store) SSFStreams(ctx context.Context) ([]store.SSFStream, error) {
	return queryAll(ctx, s, scanSSFStream, `SELECT `+ssfStreamCols+` FROM ssf_streams WHERE removed_at = 0 ORDER BY id`)
}

func scanSSFStream(sc scanner) (store.SSFStream, error) {
	var st store.SSFStream
	var events string
	var start, created, removed int64
	if err := sc.Scan(&st.ID, &st.Audience, &st.Delivery, &st.Endpoint, &st.AuthEnv, &st.PollHash, &events, &start, &created, &removed); err != nil {
		return st, err
	}
	st.StartIndex, st.CreatedAt, st.RemovedAt = uint64(start), tm(created), tm(removed)
	var err error
	if st.Events, err = parseList(events); err != nil {
		return st, fmt.Errorf("stream %q: events: %w", st.ID, err)
	}
	return st, nil
}

// SaveTransmission stores the transmitter's batch: its position and the
// tokens it queued, in one transaction (see store.SSFTransmission).
func (s *Store) SaveTransmission(ctx context.Context, t store.SSFTransmission) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := saveState(ctx, tx, t.State, t.PrevNext); err != nil {
			return err
		}
		for _, tok := range t.Tokens {
			if _, err := tx.ExecContext(ctx, `INSERT INTO ssf_queue (stream_id, jti, claims, created_at, next_at) VALUES (?, ?, ?, ?, ?)`,
				tok.StreamID, tok.JTI, tok.Claims, ts(tok.CreatedAt), ts(tok.NextAt)); err != nil {
				return err
			}
		}
		return nil
	})
}

const ssfTokenCols = `id, stream_id, jti, claims, created_at, attempts, next_at, done_at, given_up_at, last_error`

// PendingSSFTokens returns up to limit tokens of stream neither done nor
// given up whose next attempt is due at now (every pending one, for a zero
// now), oldest first.
func (s *Store) PendingSSFTokens(ctx context.Context, stream string, now time.Time, limit int) ([]store.SSFToken, error) {
	due := ts(now)
	if now.IsZero() {
		due = 1 << 62
	}
	return queryAll(ctx, s, func(sc scanner) (store.SSFToken, error) {
		var t store.SSFToken
		var created, next, done, gaveUp int64
		err := sc.Scan(&t.ID, &t.StreamID, &t.JTI, &t.Claims, &created, &t.Attempts, &next, &done, &gaveUp, &t.LastError)
		t.CreatedAt, t.NextAt, t.DoneAt, t.GivenUpAt = tm(created), tm(next), tm(done), tm(gaveUp)
		return t, err
	}, `SELECT `+ssfTokenCols+` FROM ssf_queue
		WHERE stream_id = ? AND done_at = 0 AND given_up_at = 0 AND next_at <= ? ORDER BY id LIMIT ?`, stream, due, limit)
}

// RecordSSFToken stores the outcome of an attempt at t.
func (s *Store) RecordSSFToken(ctx context.Context, t store.SSFToken) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE ssf_queue SET attempts = ?, next_at = ?, done_at = ?, given_up_at = ?, last_error = ? WHERE id = ?`,
			t.Attempts, ts(t.NextAt), ts(t.DoneAt), ts(t.GivenUpAt), t.LastError, t.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("SET %d: %w", t.ID, store.ErrNotFound)
		}
		return nil
	})
}

// AckSSFTokens marks a poll stream's tokens acknowledged by jti, and
// returns how many were pending.
func (s *Store) AckSSFTokens(ctx context.Context, stream string, jtis []string, at time.Time) (int, error) {
	n := 0
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		n = 0
		for _, jti := range jtis {
			res, err := tx.ExecContext(ctx, `UPDATE ssf_queue SET done_at = ? WHERE stream_id = ? AND jti = ? AND done_at = 0`, ts(at), stream, jti)
			if err != nil {
				return err
			}
			k, _ := res.RowsAffected()
			n += int(k)
		}
		return nil
	})
	return n, err
}

// PruneSSFTokens deletes tokens delivered, acknowledged or given up before
// before, and every token of a stream removed before then; it returns how
// many it deleted.
func (s *Store) PruneSSFTokens(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM ssf_queue WHERE (done_at != 0 AND done_at < ?) OR (given_up_at != 0 AND given_up_at < ?)
			OR stream_id IN (SELECT id FROM ssf_streams WHERE removed_at != 0 AND removed_at < ?)`, ts(before), ts(before), ts(before))
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return int(n), err
}
