package auditlog

import (
	"crypto"
	"errors"
	"io"
	"testing"
	"time"
)

func TestErrorMessages(t *testing.T) {
	tests := []struct {
		err      error
		msg      string
		sentinel error
	}{
		{&FormatError{Format: "checkpoint", Line: 2, Reason: "bad size"}, "auditlog: malformed checkpoint: line 2: bad size", ErrMalformed},
		{&FormatError{Format: "tile path", Reason: "no index"}, "auditlog: malformed tile path: no index", ErrMalformed},
		{&InclusionError{Index: 3, Size: 8, Reason: "r"}, "auditlog: inclusion of entry 3 in tree of size 8: r", ErrProof},
		{&ConsistencyError{OldSize: 3, NewSize: 8, Reason: "r"}, "auditlog: consistency of tree size 3 with tree size 8: r", ErrProof},
		{&OriginError{Origin: "a", KeyName: "b"}, `auditlog: checkpoint origin "a" is not the log key name "b"`, ErrUnverified},
		{&QuorumError{Have: 1, Want: 2}, "auditlog: 1 valid witness cosignatures, 2 required", ErrQuorum},
		{&StatusError{Path: "checkpoint", StatusCode: 404}, "auditlog: fetching checkpoint: HTTP status 404", ErrNotFound},
	}
	sentinels := []error{ErrMalformed, ErrUnverified, ErrQuorum, ErrProof, ErrNotFound, ErrInvalid}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.msg {
			t.Errorf("Error() = %q, want %q", got, tt.msg)
		}
		for _, s := range sentinels {
			if errors.Is(tt.err, s) != (s == tt.sentinel) {
				t.Errorf("errors.Is(%q, %v) = %v", tt.msg, s, !(s == tt.sentinel))
			}
		}
	}
	if errors.Is(&StatusError{StatusCode: 500}, ErrNotFound) {
		t.Error("a 500 matches ErrNotFound")
	}
}

// faultySigner is an Ed25519 crypto.Signer whose Sign misbehaves.
type faultySigner struct {
	custodySigner
	sig []byte
	err error
}

func (s faultySigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) { return s.sig, s.err }

func TestSignerFaults(t *testing.T) {
	text := Checkpoint{Origin: "o", Size: 1, Hash: LeafHash(nil)}.Marshal()
	refused := errors.New("custody refused")
	for name, key := range map[string]faultySigner{
		"error":      {custodySigner{testKey(1)}, nil, refused},
		"short sig":  {custodySigner{testKey(1)}, make([]byte, 63), nil},
		"empty sig":  {custodySigner{testKey(1)}, nil, nil},
		"longer sig": {custodySigner{testKey(1)}, make([]byte, 65), nil},
	} {
		s, err := NewNoteSigner("o", key)
		if err != nil {
			t.Fatal(err)
		}
		if sig, err := s.Sign(text); err == nil || key.err != nil && !errors.Is(err, refused) {
			t.Errorf("%s: note signer Sign = %x, %v", name, sig, err)
		}
		c, err := NewCosigner("w", key, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		if sig, err := c.Sign(text); err == nil || key.err != nil && !errors.Is(err, refused) {
			t.Errorf("%s: cosigner Sign = %x, %v", name, sig, err)
		}
	}
}
