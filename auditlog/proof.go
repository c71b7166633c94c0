package auditlog

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// ProofHeader is the first line of a c2sp.org/tlog-proof@v1 proof.
const ProofHeader = "c2sp.org/tlog-proof@v1"

// maxPathLen is the longest inclusion proof: one hash per tree level.
const maxPathLen = 64

// A Proof is a c2sp.org/tlog-proof@v1 proof: a self-contained,
// offline-verifiable proof that an entry is in the log, with the log's
// signed checkpoint and any witness cosignatures. Proof files are usually
// stored with the extension .tlog-proof.
type Proof struct {
	// Extra is opaque, unauthenticated data. custos puts the logged entry
	// (the canonical event bytes) here; Verify hashes it as the entry when
	// no entry is given, so its content is authenticated by the inclusion
	// proof, not by the file. Empty means the extra line is absent.
	Extra []byte
	// Index is the entry's zero-based index in the log.
	Index uint64
	// Path is the RFC 6962 inclusion proof, from the leaf's sibling up to
	// the root's child.
	Path []Hash
	// Checkpoint is the signed checkpoint note, with any cosignatures,
	// verbatim.
	Checkpoint []byte
}

// Marshal returns the proof in the c2sp.org/tlog-proof@v1 text format.
func (p Proof) Marshal() []byte {
	b := make([]byte, 0, 64+base64.StdEncoding.EncodedLen(len(p.Extra))+45*len(p.Path)+len(p.Checkpoint))
	b = append(b, ProofHeader+"\n"...)
	if len(p.Extra) > 0 {
		b = append(b, "extra "...)
		b = base64.StdEncoding.AppendEncode(b, p.Extra)
		b = append(b, '\n')
	}
	b = append(b, "index "...)
	b = strconv.AppendUint(b, p.Index, 10)
	b = append(b, '\n')
	for _, h := range p.Path {
		b = base64.StdEncoding.AppendEncode(b, h[:])
		b = append(b, '\n')
	}
	b = append(b, '\n')
	return append(b, p.Checkpoint...)
}

// ParseProof parses a c2sp.org/tlog-proof@v1 proof. It is strict: the
// header line; an optional extra line with non-empty canonical standard
// base64; the index without leading zeros; at most 64 hash lines in
// canonical standard base64 of 32 bytes; an empty line; and a signed note
// (checked for structure, not signatures) whose text is a checkpoint. Any
// accepted input is exactly what Marshal returns for the result.
func ParseProof(b []byte) (Proof, error) {
	const format = "tlog-proof"
	var p Proof
	line := 0
	next := func() (string, bool) {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return "", false
		}
		l := string(b[:i])
		b = b[i+1:]
		line++
		return l, true
	}
	if l, ok := next(); !ok || l != ProofHeader {
		return Proof{}, malformed(format, 1, "first line is not "+ProofHeader)
	}
	l, ok := next()
	if !ok {
		return Proof{}, malformed(format, line+1, "missing index line")
	}
	if rest, found := strings.CutPrefix(l, "extra "); found {
		extra, err := base64.StdEncoding.Strict().DecodeString(rest)
		if err != nil || len(extra) == 0 || base64.StdEncoding.EncodeToString(extra) != rest {
			return Proof{}, malformed(format, line, "extra is not non-empty canonical standard base64")
		}
		p.Extra = extra
		if l, ok = next(); !ok {
			return Proof{}, malformed(format, line+1, "missing index line")
		}
	}
	rest, found := strings.CutPrefix(l, "index ")
	if !found {
		return Proof{}, malformed(format, line, "expected index line")
	}
	if p.Index, ok = parseDecimal(rest); !ok {
		return Proof{}, malformed(format, line, "index is not a decimal without leading zeros")
	}
	for {
		l, ok := next()
		if !ok {
			return Proof{}, malformed(format, line+1, "missing empty line before the checkpoint")
		}
		if l == "" {
			break
		}
		if len(p.Path) == maxPathLen {
			return Proof{}, malformed(format, line, "inclusion proof longer than 64 hashes")
		}
		var h Hash
		if !decodeHash(&h, l) {
			return Proof{}, malformed(format, line, "inclusion proof line is not canonical standard base64 of 32 bytes")
		}
		p.Path = append(p.Path, h)
	}
	text, _, err := splitNote(b)
	if err != nil {
		return Proof{}, fmt.Errorf("auditlog: tlog-proof checkpoint: %w", err)
	}
	if _, err := ParseCheckpoint(text); err != nil {
		return Proof{}, fmt.Errorf("auditlog: tlog-proof checkpoint: %w", err)
	}
	p.Checkpoint = bytes.Clone(b)
	return p, nil
}

// Verify checks the proof against a log key and a witness policy, and
// returns the verified checkpoint.
//
// It opens p.Checkpoint with OpenCheckpoint(log, witnesses...) (errors
// matching ErrMalformed, ErrUnverified or ErrInvalid), requires at least
// quorum of the witnesses to have valid cosignatures (a *QuorumError,
// matching ErrQuorum), and then checks that entry is the entry at p.Index
// (an *InclusionError, matching ErrProof). If entry is nil, p.Extra is used
// as the entry, and a proof with no extra data is refused (ErrMalformed);
// to verify the inclusion of an empty entry, pass a non-nil empty slice.
func (p Proof) Verify(entry []byte, log note.Verifier, quorum int, witnesses ...note.Verifier) (Checkpoint, error) {
	cp, n, err := OpenCheckpoint(p.Checkpoint, log, witnesses...)
	if err != nil {
		return Checkpoint{}, err
	}
	if err := CheckQuorum(n, quorum, witnesses...); err != nil {
		return Checkpoint{}, err
	}
	if entry == nil {
		if len(p.Extra) == 0 {
			return Checkpoint{}, malformed("tlog-proof", 0, "no entry given and no extra data to use as the entry")
		}
		entry = p.Extra
	}
	if err := VerifyInclusion(cp, p.Index, LeafHash(entry), p.Path); err != nil {
		return Checkpoint{}, err
	}
	return cp, nil
}
