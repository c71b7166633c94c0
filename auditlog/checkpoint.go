package auditlog

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// MaxNoteSize bounds a signed note (a checkpoint with its signatures) that
// this package will parse. It leaves room for far more than the 16
// signatures, post-quantum ones included, that c2sp.org/signed-note
// requires verifiers to accept.
const MaxNoteSize = 1 << 20

// A Checkpoint is the note text of a c2sp.org/tlog-checkpoint: a log's
// Merkle tree head at one size.
type Checkpoint struct {
	Origin     string   // the log's identity; custos's log key has the same name
	Size       uint64   // number of entries in the tree
	Hash       Hash     // RFC 6962 root hash of the tree of Size entries
	Extensions []string // extension lines, without their newlines
}

// Marshal returns the checkpoint's note text: origin, size and root hash,
// then each extension, each line ending in a newline. A Checkpoint that
// ParseCheckpoint would not produce (an empty origin, a line holding a
// newline or control character, an empty extension) marshals to text that
// ParseCheckpoint rejects.
func (c Checkpoint) Marshal() []byte {
	b := make([]byte, 0, len(c.Origin)+80)
	b = append(b, c.Origin...)
	b = append(b, '\n')
	b = strconv.AppendUint(b, c.Size, 10)
	b = append(b, '\n')
	b = base64.StdEncoding.AppendEncode(b, c.Hash[:])
	b = append(b, '\n')
	for _, e := range c.Extensions {
		b = append(b, e...)
		b = append(b, '\n')
	}
	return b
}

// ParseCheckpoint parses checkpoint note text (without signatures). It is
// strict: the text is valid UTF-8 without control characters other than
// newline and ends with a newline; it has at least three lines and none is
// empty; the size is decimal without leading zeros (except "0"); the hash is
// canonical, padded standard base64 of exactly 32 bytes. Any accepted text
// is exactly what Marshal returns for the result.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	const format = "checkpoint"
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return Checkpoint{}, malformed(format, 0, "text does not end with a newline")
	}
	if len(text) > MaxNoteSize {
		return Checkpoint{}, malformed(format, 0, "text too long")
	}
	if err := checkNoteChars(format, text); err != nil {
		return Checkpoint{}, err
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, malformed(format, 0, "fewer than three lines")
	}
	for i, l := range lines {
		if l == "" {
			return Checkpoint{}, malformed(format, i+1, "empty line")
		}
	}
	c := Checkpoint{Origin: lines[0]}
	size, ok := parseDecimal(lines[1])
	if !ok {
		return Checkpoint{}, malformed(format, 2, "tree size is not a decimal without leading zeros")
	}
	c.Size = size
	if !decodeHash(&c.Hash, lines[2]) {
		return Checkpoint{}, malformed(format, 3, "root hash is not canonical standard base64 of 32 bytes")
	}
	if len(lines) > 3 {
		c.Extensions = lines[3:]
	}
	return c, nil
}

// parseDecimal parses an ASCII decimal uint64 with no leading zeros, "0"
// excepted.
func parseDecimal(s string) (uint64, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// checkNoteChars enforces the signed-note character rules: valid UTF-8 and
// no control characters other than newline.
func checkNoteChars(format string, b []byte) error {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return malformed(format, 1+bytes.Count(b[:i], []byte("\n")), "invalid UTF-8")
		}
		if r < 0x20 && r != '\n' {
			return malformed(format, 1+bytes.Count(b[:i], []byte("\n")), "control character")
		}
		i += size
	}
	return nil
}

// isValidKeyName reports whether name is a valid signed-note key name:
// non-empty, valid UTF-8, no Unicode spaces and no plus.
func isValidKeyName(name string) bool {
	return name != "" && utf8.ValidString(name) &&
		strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

// splitNote checks the c2sp.org/signed-note structure of a signed note and
// returns its text (with the final newline) and its signature block. It
// accepts exactly the notes golang.org/x/mod/sumdb/note.Open can parse, so
// a structural fault is reported as ErrMalformed before any signature is
// looked at.
func splitNote(msg []byte) (text, sigs []byte, err error) {
	const format = "note"
	if len(msg) > MaxNoteSize {
		return nil, nil, malformed(format, 0, "note too long")
	}
	if err := checkNoteChars(format, msg); err != nil {
		return nil, nil, err
	}
	split := bytes.LastIndex(msg, []byte("\n\n"))
	if split < 0 {
		return nil, nil, malformed(format, 0, "no blank line before the signatures")
	}
	text, sigs = msg[:split+1], msg[split+2:]
	if len(sigs) == 0 || sigs[len(sigs)-1] != '\n' {
		return nil, nil, malformed(format, 0, "no signature lines, or the last does not end with a newline")
	}
	line := 1 + bytes.Count(text, []byte("\n")) + 1
	for rest, n := sigs, 0; len(rest) > 0; line++ {
		i := bytes.IndexByte(rest, '\n')
		l := rest[:i]
		rest = rest[i+1:]
		if n++; n > 100 {
			return nil, nil, malformed(format, line, "more than 100 signatures")
		}
		after, ok := bytes.CutPrefix(l, []byte("— "))
		if !ok {
			return nil, nil, malformed(format, line, "signature line does not start with an em dash and a space")
		}
		name, b64, _ := strings.Cut(string(after), " ")
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || !isValidKeyName(name) || b64 == "" || len(sig) < 5 {
			return nil, nil, malformed(format, line, "signature line is not a key name and base64 of a key ID and signature")
		}
	}
	return text, sigs, nil
}

// OpenCheckpoint verifies a signed note carrying a checkpoint and returns
// the checkpoint and the verified note.
//
// The note must carry a valid signature from log, and the checkpoint's
// origin must equal log.Name() (custos names its log key after the origin,
// as c2sp.org/tlog-checkpoint recommends); otherwise the error matches
// ErrUnverified (an *OriginError for the origin). Cosignatures from the
// given witnesses are verified when present and listed in the note's Sigs;
// a signature line whose key name and hash match a known verifier but that
// fails to verify rejects the whole note, as c2sp.org/signed-note advises.
// Signatures from unknown keys are ignored and listed in UnverifiedSigs.
// OpenCheckpoint does not require any witness cosignature: use CheckQuorum
// on the returned note for that.
//
// Malformed input matches ErrMalformed; nil verifiers, or two verifiers with
// the same name and key hash, match ErrInvalid.
func OpenCheckpoint(signed []byte, log note.Verifier, witnesses ...note.Verifier) (Checkpoint, *note.Note, error) {
	if _, _, err := splitNote(signed); err != nil {
		return Checkpoint{}, nil, err
	}
	if err := checkVerifiers(log, witnesses); err != nil {
		return Checkpoint{}, nil, err
	}
	n, err := note.Open(signed, note.VerifierList(append([]note.Verifier{log}, witnesses...)...))
	if err != nil {
		if _, ok := errors.AsType[*note.UnverifiedNoteError](err); ok {
			return Checkpoint{}, nil, fmt.Errorf("%w: no signature from log key %s+%08x", ErrUnverified, log.Name(), log.KeyHash())
		}
		return Checkpoint{}, nil, fmt.Errorf("%w: %w", ErrUnverified, err)
	}
	if !hasSig(n, log) {
		return Checkpoint{}, nil, fmt.Errorf("%w: no signature from log key %s+%08x", ErrUnverified, log.Name(), log.KeyHash())
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, nil, err
	}
	if c.Origin != log.Name() {
		return Checkpoint{}, nil, &OriginError{Origin: c.Origin, KeyName: log.Name()}
	}
	return c, n, nil
}

// CheckQuorum reports whether at least quorum of the given witnesses have a
// verified signature in n (a note returned by OpenCheckpoint or note.Open
// with those witnesses among its verifiers). Each witness counts once; the
// log's own key must not be among the witnesses. It
// returns a *QuorumError (matching ErrQuorum) when too few are present, and
// an error matching ErrInvalid when quorum is negative or larger than the
// number of distinct witnesses.
func CheckQuorum(n *note.Note, quorum int, witnesses ...note.Verifier) error {
	if quorum < 0 {
		return fmt.Errorf("%w: negative quorum %d", ErrInvalid, quorum)
	}
	seen := make(map[nameHash]bool, len(witnesses))
	have := 0
	for _, w := range witnesses {
		if w == nil {
			return fmt.Errorf("%w: nil witness verifier", ErrInvalid)
		}
		k := nameHash{w.Name(), w.KeyHash()}
		if seen[k] {
			continue
		}
		seen[k] = true
		if hasSig(n, w) {
			have++
		}
	}
	if quorum > len(seen) {
		return fmt.Errorf("%w: quorum %d exceeds the %d witnesses given", ErrInvalid, quorum, len(seen))
	}
	if have < quorum {
		return &QuorumError{Have: have, Want: quorum}
	}
	return nil
}

type nameHash struct {
	name string
	hash uint32
}

// checkVerifiers rejects nil verifiers and verifiers that share a name and
// key hash, which note.Open could not tell apart.
func checkVerifiers(log note.Verifier, witnesses []note.Verifier) error {
	if log == nil {
		return fmt.Errorf("%w: nil log verifier", ErrInvalid)
	}
	seen := map[nameHash]bool{{log.Name(), log.KeyHash()}: true}
	for _, w := range witnesses {
		if w == nil {
			return fmt.Errorf("%w: nil witness verifier", ErrInvalid)
		}
		k := nameHash{w.Name(), w.KeyHash()}
		if seen[k] {
			return fmt.Errorf("%w: two verifiers for key %s+%08x", ErrInvalid, k.name, k.hash)
		}
		seen[k] = true
	}
	return nil
}

// hasSig reports whether n has a verified signature by v's key.
func hasSig(n *note.Note, v note.Verifier) bool {
	for _, s := range n.Sigs {
		if s.Name == v.Name() && s.Hash == v.KeyHash() {
			return true
		}
	}
	return false
}
