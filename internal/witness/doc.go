// Package witness implements both sides of c2sp.org/tlog-witness: a witness
// that cosigns the checkpoints of the logs it follows, and the Submitter a
// log runs to send each new checkpoint to its witnesses and keep their
// cosignatures.
//
// A witness is an outside party (an auditor, a regulator) that keeps, for
// each log it follows, the latest checkpoint it cosigned. It cosigns a new
// checkpoint only when the log's signature verifies and a Merkle
// consistency proof shows that the new tree extends the one it holds, and
// it records the new checkpoint in the same atomic step that checks the
// old one, so it never cosigns two checkpoints that disagree and never goes
// back. A log that forks its history, or rewrites it after a witness saw
// it, can therefore not get that witness's cosignature on the new history:
// anyone holding a cosigned checkpoint can prove what the log said.
//
// Cosignatures are c2sp.org/tlog-cosignature cosignature/v1 (timestamped
// Ed25519) signatures, made with auditlog.NewCosigner and checked with
// auditlog.NewCosignatureVerifier.
//
// The Submitter is fed by the log's OnCheckpoint hook. It never blocks the
// log: it keeps only the newest checkpoint and sends it, for each witness,
// from a goroutine of its own with the consistency proof from the size
// that witness last cosigned, retrying with bounded, jittered backoff.
// Every cosignature it receives is verified with the witness's key before
// it is appended to the log's stored checkpoint note.
package witness
