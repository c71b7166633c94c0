-- +goose Up
-- The bulk of the audit log moves out of the database into files beside
-- it, written once and synced before the commit that depends on them.
--
-- Large commits of audit-log entries are kept in segment files beside the
-- database (see segments.go): a segment is registered here before its
-- file is created, and an extent says which entries a range of a segment
-- holds. Extents are cut at entry-bundle boundaries (multiples of 256), so
-- reading a bundle reads one or two extents. log_entries keeps the small
-- commits, whose bytes stay in the database.
CREATE TABLE log_segments (
    id      INTEGER PRIMARY KEY,
    created INTEGER NOT NULL
) STRICT;

CREATE TABLE log_extents (
    first   INTEGER PRIMARY KEY,
    count   INTEGER NOT NULL,
    segment INTEGER NOT NULL REFERENCES log_segments (id),
    offset  INTEGER NOT NULL,
    length  INTEGER NOT NULL
) STRICT;

CREATE INDEX log_extents_segment ON log_extents (segment, offset);

-- Full level-0 tiles from tiles_from on are kept in the tile file beside
-- the database (see tilefile.go); earlier ones stay in log_tile_parts.
ALTER TABLE log_state ADD COLUMN tiles_from INTEGER NOT NULL DEFAULT 0;
UPDATE log_state SET tiles_from = integrated / 256;

-- +goose Down
ALTER TABLE log_state DROP COLUMN tiles_from;
DROP TABLE log_extents;
DROP TABLE log_segments;
