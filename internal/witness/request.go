package witness

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/custos-dev/custos/auditlog"
)

// Limits of an add-checkpoint request.
const (
	// MaxProofLines is the most consistency proof lines a request may
	// carry (c2sp.org/tlog-witness: a client MUST NOT send more than 63).
	MaxProofLines = 63
	// MaxRequestSize bounds an add-checkpoint request body. It leaves room
	// for a checkpoint with more than the 16 signatures, post-quantum ones
	// included, that c2sp.org/signed-note requires verifiers to accept.
	MaxRequestSize = 256 << 10
)

// ErrMalformed is returned for an add-checkpoint request that does not
// follow c2sp.org/tlog-witness, or whose checkpoint is not a well-formed
// signed note.
var ErrMalformed = errors.New("witness: malformed add-checkpoint request")

// A Request is the body of a c2sp.org/tlog-witness add-checkpoint request.
type Request struct {
	// OldSize is the size of the latest checkpoint the witness cosigned
	// for the log, as far as the client knows (0 at first).
	OldSize uint64
	// Proof is the RFC 6962 consistency proof from OldSize to the new
	// checkpoint's size; empty when OldSize is 0.
	Proof []auditlog.Hash
	// Checkpoint is the new checkpoint as a signed note.
	Checkpoint []byte
}

// Marshal returns the request body: the old size line, the proof lines, an
// empty line and the checkpoint.
func (r Request) Marshal() []byte {
	b := make([]byte, 0, 32+45*len(r.Proof)+len(r.Checkpoint))
	b = append(b, "old "...)
	b = strconv.AppendUint(b, r.OldSize, 10)
	b = append(b, '\n')
	for _, h := range r.Proof {
		b = append(b, h.String()...)
		b = append(b, '\n')
	}
	b = append(b, '\n')
	return append(b, r.Checkpoint...)
}

// ParseRequest parses an add-checkpoint request body. It is strict: the
// old size is decimal without leading zeros (except "0"), each proof line
// is one hash in canonical, padded standard base64, there are at most
// MaxProofLines of them, and the checkpoint is not empty. Any accepted body
// is exactly what Marshal returns for the result. The checkpoint's note
// structure and signatures are checked by the witness, not here. Errors
// match ErrMalformed.
func ParseRequest(body []byte) (Request, error) {
	if len(body) > MaxRequestSize {
		return Request{}, fmt.Errorf("%w: body larger than %d bytes", ErrMalformed, MaxRequestSize)
	}
	line, rest, ok := cutLine(body)
	if !ok {
		return Request{}, fmt.Errorf("%w: no old size line", ErrMalformed)
	}
	n, found := bytes.CutPrefix(line, []byte("old "))
	if !found {
		return Request{}, fmt.Errorf("%w: first line is not \"old <size>\"", ErrMalformed)
	}
	var r Request
	if r.OldSize, ok = parseSize(n); !ok {
		return Request{}, fmt.Errorf("%w: old size is not a decimal without leading zeros", ErrMalformed)
	}
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return Request{}, fmt.Errorf("%w: no empty line before the checkpoint", ErrMalformed)
		}
		if len(line) == 0 {
			break
		}
		if len(r.Proof) == MaxProofLines {
			return Request{}, fmt.Errorf("%w: more than %d proof lines", ErrMalformed, MaxProofLines)
		}
		h, err := auditlog.ParseHash(string(line))
		if err != nil {
			return Request{}, fmt.Errorf("%w: proof line %d is not a base64 hash", ErrMalformed, len(r.Proof)+1)
		}
		r.Proof = append(r.Proof, h)
	}
	if len(rest) == 0 {
		return Request{}, fmt.Errorf("%w: no checkpoint", ErrMalformed)
	}
	r.Checkpoint = rest
	return r, nil
}

// cutLine cuts b at its first newline.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, b, false
	}
	return b[:i], b[i+1:], true
}

// parseSize parses an ASCII decimal uint64 with no leading zeros, "0"
// excepted.
func parseSize(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	return n, err == nil
}
