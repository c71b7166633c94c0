package auditlog

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error this package returns matches exactly one of
// them with errors.Is; the typed errors below carry the details.
var (
	// ErrMalformed: the input does not follow its format (checkpoint,
	// signed note, proof file, tile path, tile, entry bundle, verifier key).
	ErrMalformed = errors.New("auditlog: malformed input")
	// ErrUnverified: a signed note does not carry a valid signature from
	// the log's key, carries an invalid signature from a known key, or its
	// checkpoint's origin is not the log's key name.
	ErrUnverified = errors.New("auditlog: checkpoint not verified")
	// ErrQuorum: fewer valid witness cosignatures than required.
	ErrQuorum = errors.New("auditlog: witness quorum not met")
	// ErrProof: an inclusion or consistency proof does not verify.
	ErrProof = errors.New("auditlog: proof does not verify")
	// ErrNotFound: a Fetcher has no such resource (HTTP 404).
	ErrNotFound = errors.New("auditlog: not found")
	// ErrInvalid: the caller's own arguments cannot work: a nil verifier
	// or fetcher, two verifiers with the same name and key hash, a quorum
	// larger than the witness list, a key that is not Ed25519, an index
	// or size outside the tree.
	ErrInvalid = errors.New("auditlog: invalid argument")
)

// A FormatError reports input that does not follow its format. It matches
// ErrMalformed.
type FormatError struct {
	Format string // "checkpoint", "note", "tlog-proof", "tile path", "hash tile", "entry bundle", "verifier key", "cosignature"
	Line   int    // 1-based line number for line formats, 0 when not applicable
	Reason string
}

func (e *FormatError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("auditlog: malformed %s: line %d: %s", e.Format, e.Line, e.Reason)
	}
	return fmt.Sprintf("auditlog: malformed %s: %s", e.Format, e.Reason)
}

// Unwrap returns ErrMalformed.
func (e *FormatError) Unwrap() error { return ErrMalformed }

func malformed(format string, line int, reason string) error {
	return &FormatError{Format: format, Line: line, Reason: reason}
}

// An InclusionError reports an inclusion proof for the entry at Index that
// does not verify against the tree of Size. It matches ErrProof.
type InclusionError struct {
	Index, Size uint64
	Reason      string
}

func (e *InclusionError) Error() string {
	return fmt.Sprintf("auditlog: inclusion of entry %d in tree of size %d: %s", e.Index, e.Size, e.Reason)
}

// Unwrap returns ErrProof.
func (e *InclusionError) Unwrap() error { return ErrProof }

// A ConsistencyError reports that the tree of OldSize is not shown to be a
// prefix of the tree of NewSize. It matches ErrProof.
type ConsistencyError struct {
	OldSize, NewSize uint64
	Reason           string
}

func (e *ConsistencyError) Error() string {
	return fmt.Sprintf("auditlog: consistency of tree size %d with tree size %d: %s", e.OldSize, e.NewSize, e.Reason)
}

// Unwrap returns ErrProof.
func (e *ConsistencyError) Unwrap() error { return ErrProof }

// An OriginError reports a checkpoint whose origin line is not the name of
// the log key that signed it. It matches ErrUnverified.
type OriginError struct {
	Origin  string // the checkpoint's origin line
	KeyName string // the log verifier's name
}

func (e *OriginError) Error() string {
	return fmt.Sprintf("auditlog: checkpoint origin %q is not the log key name %q", e.Origin, e.KeyName)
}

// Unwrap returns ErrUnverified.
func (e *OriginError) Unwrap() error { return ErrUnverified }

// A QuorumError reports that only Have of the required Want witness
// cosignatures were present and valid. It matches ErrQuorum.
type QuorumError struct {
	Have, Want int
}

func (e *QuorumError) Error() string {
	return fmt.Sprintf("auditlog: %d valid witness cosignatures, %d required", e.Have, e.Want)
}

// Unwrap returns ErrQuorum.
func (e *QuorumError) Unwrap() error { return ErrQuorum }

// A StatusError reports an HTTP response other than 200 OK from a tlog-tiles
// server. A 404 matches ErrNotFound.
type StatusError struct {
	Path       string
	StatusCode int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("auditlog: fetching %s: HTTP status %d", e.Path, e.StatusCode)
}

// Is reports whether target is ErrNotFound and the status is 404.
func (e *StatusError) Is(target error) bool {
	return target == ErrNotFound && e.StatusCode == 404
}
