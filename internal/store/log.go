package store

import "time"

// LogState is the persisted state of the audit log.
type LogState struct {
	// Origin names the log in its checkpoints; it is fixed when the log is
	// created.
	Origin string
	// Sequenced is the number of entries stored: entries [0, Sequenced)
	// are durable and have their final index.
	Sequenced uint64
	// Integrated is the size of the tree covered by the latest checkpoint.
	Integrated uint64
	// Pruned is the index below which entry bodies have been deleted.
	// Hashes are never deleted.
	Pruned uint64
	// Checkpoint is the latest signed checkpoint (a C2SP signed note), or
	// nil before the first integration.
	Checkpoint []byte
}

// Chunk is stored entries: Count consecutive entries from index First, each
// with a two-byte big-endian length prefix, as in C2SP tlog-tiles entry
// bundles. Each entry is written once, in the commit that acknowledges it;
// a backend may store one commit's entries as several chunks, and entry
// bundles are cut from chunks when read.
type Chunk struct {
	First uint64
	Count uint64
	Data  []byte
}

// Tile is a hash tile with its interior nodes. A tile at level L, index n,
// of width W (1..256) covers the W tree nodes at height 8L starting at
// 256n; Data holds its rows from the bottom up: W hashes, then W/2 parents,
// W/4, ..., each row the complete nodes over the row below, 32 bytes each.
// The first 32·W bytes are the tile the tlog-tiles API serves. Backends
// store a tile as parts (see TilePart).
type Tile struct {
	Level uint8
	Index uint64
	Width int
	Data  []byte
}

// Integration is one step of the tree: the tile parts that changed and the
// signed checkpoint for the new size.
type Integration struct {
	Size       uint64
	Tiles      []TilePart
	Checkpoint []byte
	Time       time.Time
}

// NoteKey is a note-signing key (the audit log's, or a witness's): an
// Ed25519 key sealed by key custody like a token-signing key.
type NoteKey struct {
	Name    string
	Public  []byte // Ed25519 public key, 32 bytes
	Sealed  []byte // custos-sealed-key/v1 envelope of the PKCS#8 private key
	Sealer  string
	Created time.Time
}

// LogCheckpoint is a checkpoint the log signed, kept forever so that any
// later state can be checked against every earlier one.
type LogCheckpoint struct {
	Size uint64
	Time time.Time
	Note []byte
}
