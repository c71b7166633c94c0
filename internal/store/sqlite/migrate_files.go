package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/pressly/goose/v3"
)

// logFiles (migration 15) moves the bulk of the audit log out of the
// database into files beside it, written once and synced before the commit
// that depends on them (see segments.go and tilefile.go):
//
//   - large commits' entries go to segment files: a segment is registered
//     in log_segments before its file is created (AUTOINCREMENT, so that an
//     id is never used twice), and a row of log_extents says which entries
//     a range of a segment holds, cut at entry-bundle boundaries (multiples
//     of 256) so that reading a bundle reads one or two extents;
//     log_entries keeps the small commits, whose bytes stay in the
//     database;
//   - full level-0 tiles from log_state.tiles_from on go to the tile file;
//     earlier ones stay in log_tile_parts.
//
// Migrating down is refused once the files hold anything, or a segment
// was ever started: their entries and tiles would be lost, and the ids of
// segment files left behind used again.
var logFiles = goose.NewGoMigration(15, &goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
	for _, q := range []string{
		`CREATE TABLE log_segments (
			id      INTEGER PRIMARY KEY AUTOINCREMENT,
			created INTEGER NOT NULL
		) STRICT`,
		`CREATE TABLE log_extents (
			first    INTEGER PRIMARY KEY,
			count    INTEGER NOT NULL,
			segment  INTEGER NOT NULL REFERENCES log_segments (id),
			"offset" INTEGER NOT NULL,
			length   INTEGER NOT NULL
		) STRICT`,
		`CREATE INDEX log_extents_segment ON log_extents (segment, "offset")`,
		`ALTER TABLE log_state ADD COLUMN tiles_from INTEGER NOT NULL DEFAULT 0`,
		`UPDATE log_state SET tiles_from = integrated / 256`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}}, &goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
	var inFiles int
	err := tx.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM log_segments) +
		(SELECT COUNT(*) FROM log_state WHERE integrated / 256 > tiles_from)`).Scan(&inFiles)
	if err != nil {
		return err
	}
	if inFiles > 0 {
		return errors.New("audit log entries or tiles are in the files beside the database: migrating below 15 would lose them")
	}
	for _, q := range []string{
		`ALTER TABLE log_state DROP COLUMN tiles_from`,
		`DROP TABLE log_extents`,
		`DROP TABLE log_segments`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}})
