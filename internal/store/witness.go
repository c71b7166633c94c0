package store

import "time"

// WitnessLog is a witness's record of one log: the latest checkpoint it
// cosigned for the log's origin. The witness cosigns a checkpoint only if
// it is consistent with this one, so the record only moves forward.
type WitnessLog struct {
	Origin string
	Size   uint64
	Root   []byte // the checkpoint's root hash, 32 bytes
	// Checkpoint is the signed note the witness hands out: the checkpoint
	// text with the log's signature and the witness's own cosignature.
	Checkpoint []byte
	// Time is the cosignature's timestamp.
	Time time.Time
}

// Cosignatures are cosignature lines a witness returned for one of the
// log's checkpoints, to be added to the stored checkpoint note.
type Cosignatures struct {
	// Witness identifies the witness: its cosignature verifier key.
	Witness string
	// Size is the size of the cosigned checkpoint.
	Size uint64
	// Lines are signed-note signature lines, each "— NAME BASE64\n".
	Lines []byte
	// Time is when they were received.
	Time time.Time
}

// WitnessProgress is what the log knows of one witness: the size of the
// largest checkpoint it cosigned for the log.
type WitnessProgress struct {
	Witness string // the witness's cosignature verifier key
	Size    uint64
	Time    time.Time
}
