package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/custos-dev/custos/internal/store"
)

// InitWitness names the witness whose state this database holds, unless it
// has a name already, and returns the name it has. A witness keeps the name
// it was created with.
func (s *Store) InitWitness(ctx context.Context, name string) (string, error) {
	if name == "" {
		return "", errors.New("witness: empty name")
	}
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO witness_identity (id, name) VALUES (1, ?) ON CONFLICT (id) DO NOTHING`, name)
		return err
	})
	if err != nil {
		return "", err
	}
	return s.WitnessName(ctx)
}

// WitnessName returns the witness's name; store.ErrNotFound before
// InitWitness.
func (s *Store) WitnessName(ctx context.Context) (string, error) {
	var name string
	err := s.queryRow(ctx, `SELECT name FROM witness_identity WHERE id = 1`).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("witness: %w", store.ErrNotFound)
	}
	return name, err
}

// WitnessLog returns the witness's record of the log named origin, or
// store.ErrNotFound if it never cosigned a checkpoint for it.
func (s *Store) WitnessLog(ctx context.Context, origin string) (store.WitnessLog, error) {
	w := store.WitnessLog{Origin: origin}
	var size, t int64
	err := s.queryRow(ctx, `SELECT size, root, checkpoint, time FROM witness_logs WHERE origin = ?`, origin).
		Scan(&size, &w.Root, &w.Checkpoint, &t)
	if errors.Is(err, sql.ErrNoRows) {
		return w, fmt.Errorf("witness: log %q: %w", origin, store.ErrNotFound)
	}
	w.Size, w.Time = uint64(size), tm(t)
	return w, err
}

// SetWitnessLog replaces the witness's record of the log w.Origin with w if
// the record still has size from (no record counts as size 0); otherwise,
// or if w.Size is below from, it fails with store.ErrConflict and changes
// nothing. Checking the old size and storing the new record is one atomic
// step, so two requests racing cannot both advance the record, and it
// never moves back.
func (s *Store) SetWitnessLog(ctx context.Context, from uint64, w store.WitnessLog) error {
	if w.Size < from {
		return fmt.Errorf("witness: log %q: size %d is below %d: %w", w.Origin, w.Size, from, store.ErrConflict)
	}
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE witness_logs SET size = ?, root = ?, checkpoint = ?, time = ? WHERE origin = ? AND size = ?`,
			int64(w.Size), w.Root, w.Checkpoint, ts(w.Time), w.Origin, int64(from))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
		if from == 0 {
			res, err = tx.ExecContext(ctx, `INSERT INTO witness_logs (origin, size, root, checkpoint, time) VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO NOTHING`,
				w.Origin, int64(w.Size), w.Root, w.Checkpoint, ts(w.Time))
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				return nil
			}
		}
		return fmt.Errorf("witness: log %q: record is not at size %d: %w", w.Origin, from, store.ErrConflict)
	})
}

// AddCosignatures appends a witness's cosignature lines to the stored
// checkpoint note of size c.Size (lines the note already holds are not
// repeated), and to the log state's latest checkpoint if it is that one,
// and raises what the log knows of the witness to c.Size. Both
// happen in one transaction. It fails with store.ErrNotFound if the log
// has no checkpoint of that size.
func (s *Store) AddCosignatures(ctx context.Context, c store.Cosignatures) error {
	if err := checkSigLines(c.Lines); err != nil {
		return err
	}
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var note []byte
		err := tx.QueryRowContext(ctx, `SELECT note FROM log_checkpoints WHERE size = ?`, int64(c.Size)).Scan(&note)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("audit log: checkpoint of size %d: %w", c.Size, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if grown := appendNewLines(note, c.Lines); len(grown) != len(note) {
			if _, err := tx.ExecContext(ctx, `UPDATE log_checkpoints SET note = ? WHERE size = ?`, grown, int64(c.Size)); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE log_state SET checkpoint = ? WHERE id = 1 AND integrated = ?`, grown, int64(c.Size)); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO log_witnesses (witness, size, time) VALUES (?, ?, ?)
			ON CONFLICT (witness) DO UPDATE SET size = excluded.size, time = excluded.time WHERE excluded.size >= log_witnesses.size`,
			c.Witness, int64(c.Size), ts(c.Time))
		return err
	})
}

// WitnessProgress returns what the log knows of a witness, or
// store.ErrNotFound if it never cosigned a checkpoint of the log.
func (s *Store) WitnessProgress(ctx context.Context, witness string) (store.WitnessProgress, error) {
	p := store.WitnessProgress{Witness: witness}
	var size, t int64
	err := s.queryRow(ctx, `SELECT size, time FROM log_witnesses WHERE witness = ?`, witness).Scan(&size, &t)
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("witness %q: %w", witness, store.ErrNotFound)
	}
	p.Size, p.Time = uint64(size), tm(t)
	return p, err
}

// checkSigLines checks that b is one or more signed-note signature lines:
// each starts with an em dash and a space and ends with a newline.
func checkSigLines(b []byte) error {
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return errors.New("cosignatures: not newline-terminated signature lines")
	}
	for line := range bytes.Lines(b) {
		if !bytes.HasPrefix(line, []byte("— ")) || len(line) == len("— \n") {
			return errors.New("cosignatures: a line is not a signature line")
		}
	}
	return nil
}

// appendNewLines appends to note the lines of add it does not hold yet.
func appendNewLines(note, add []byte) []byte {
	out := note
	for line := range bytes.Lines(add) {
		held := false
		for have := range bytes.Lines(out) {
			if bytes.Equal(have, line) {
				held = true
				break
			}
		}
		if !held {
			out = append(out[:len(out):len(out)], line...)
		}
	}
	return out
}
