package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
)

// Emit appends an event durably; it makes Store an event.Sink.
func (s *Store) Emit(ctx context.Context, e event.Event) error {
	fields := []byte("{}")
	if len(e.Fields) > 0 {
		var err error
		if fields, err = json.Marshal(e.Fields); err != nil {
			return fmt.Errorf("event %s: fields: %w", e.Type, err)
		}
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO events (time, class, type, actor, subject, client, ip, fields) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			ts(e.Time), string(e.Class), e.Type, e.Actor, e.Subject, e.Client, e.IP, string(fields))
		return err
	})
}

// Events returns up to limit events after position after, in order.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]store.EventRecord, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT seq, time, class, type, actor, subject, client, ip, fields FROM events WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.EventRecord
	for rows.Next() {
		var r store.EventRecord
		var t int64
		var class, fields string
		if err := rows.Scan(&r.Seq, &t, &class, &r.Type, &r.Actor, &r.Subject, &r.Client, &r.IP, &fields); err != nil {
			return nil, err
		}
		r.Time, r.Class = tm(t), event.Class(class)
		if err := json.Unmarshal([]byte(fields), &r.Fields); err != nil {
			return nil, fmt.Errorf("event %d: corrupt fields: %w", r.Seq, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
