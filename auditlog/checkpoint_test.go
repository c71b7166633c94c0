package auditlog

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func TestCheckpointRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		text string
		want Checkpoint
	}{
		{
			// The example in c2sp.org/tlog-checkpoint.
			name: "spec example",
			text: "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
			want: Checkpoint{Origin: "example.com/behind-the-sofa", Size: 20852163,
				Hash: mustParseHash(t, "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")},
		},
		{
			name: "empty tree",
			text: "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
			want: Checkpoint{Origin: "o", Size: 0, Hash: EmptyRoot()},
		},
		{
			name: "extensions and a max size",
			text: "custos.example/audit\n18446744073709551615\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\n— two\n",
			want: Checkpoint{Origin: "custos.example/audit", Size: 1<<64 - 1, Hash: EmptyRoot(),
				Extensions: []string{"ext one", "— two"}},
		},
		{
			name: "origin with spaces is allowed",
			text: "a log with spaces\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
			want: Checkpoint{Origin: "a log with spaces", Size: 1, Hash: EmptyRoot()},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCheckpoint([]byte(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			if got.Origin != tt.want.Origin || got.Size != tt.want.Size || got.Hash != tt.want.Hash ||
				strings.Join(got.Extensions, "|") != strings.Join(tt.want.Extensions, "|") {
				t.Errorf("ParseCheckpoint = %+v, want %+v", got, tt.want)
			}
			if m := tt.want.Marshal(); string(m) != tt.text {
				t.Errorf("Marshal = %q, want %q", m, tt.text)
			}
		})
	}
}

func mustParseHash(t testing.TB, s string) Hash {
	t.Helper()
	h, err := ParseHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestParseCheckpointRejects(t *testing.T) {
	const h = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	tests := []struct {
		name string
		text string
		line int
	}{
		{"empty", "", 0},
		{"no final newline", "o\n1\n" + h, 0},
		{"two lines", "o\n1\n", 0},
		{"empty origin", "\n1\n" + h + "\n", 1},
		{"empty extension", "o\n1\n" + h + "\n\n", 4},
		{"blank line inside", "o\n1\n" + h + "\n\next\n", 4},
		{"leading zero", "o\n01\n" + h + "\n", 2},
		{"double zero", "o\n00\n" + h + "\n", 2},
		{"plus sign", "o\n+1\n" + h + "\n", 2},
		{"negative", "o\n-1\n" + h + "\n", 2},
		{"overflow", "o\n18446744073709551616\n" + h + "\n", 2},
		{"space in size", "o\n1 \n" + h + "\n", 2},
		{"empty size", "o\n\n" + h + "\n", 2},
		{"short hash", "o\n1\n" + h[:40] + "\n", 3},
		{"unpadded hash", "o\n1\n" + h[:43] + "\n", 3},
		{"url base64", "o\n1\n" + strings.ReplaceAll(h, "+", "-") + "\n", 3},
		{"non-canonical padding bits", "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=\n", 3},
		{"tab", "o\t\n1\n" + h + "\n", 1},
		{"carriage return", "o\r\n1\n" + h + "\n", 1},
		{"invalid utf-8", "o\xff\n1\n" + h + "\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCheckpoint([]byte(tt.text))
			fe, ok := errors.AsType[*FormatError](err)
			if !ok || !errors.Is(err, ErrMalformed) {
				t.Fatalf("error = %v, want *FormatError", err)
			}
			if fe.Line != tt.line {
				t.Errorf("line = %d, want %d (%v)", fe.Line, tt.line, err)
			}
		})
	}
}

func TestOpenCheckpoint(t *testing.T) {
	log := newLogParty(t, testOrigin, 1)
	w1 := newWitnessParty(t, testWitness, 2)
	w2 := newWitnessParty(t, "witness.example/w2", 3)
	stranger := newLogParty(t, "stranger.example", 4)
	impostor := newLogParty(t, testOrigin, 5) // same name, other key
	cp := Checkpoint{Origin: testOrigin, Size: 42, Hash: LeafHash([]byte("root"))}

	t.Run("log and witness", func(t *testing.T) {
		signed := signCheckpoint(t, cp, log.signer, w1.signer, stranger.signer)
		got, n, err := OpenCheckpoint(signed, log.verifier, w1.verifier, w2.verifier)
		if err != nil {
			t.Fatal(err)
		}
		if got.Origin != cp.Origin || got.Size != cp.Size || got.Hash != cp.Hash {
			t.Errorf("checkpoint = %+v, want %+v", got, cp)
		}
		if len(n.Sigs) != 2 || len(n.UnverifiedSigs) != 1 || n.UnverifiedSigs[0].Name != "stranger.example" {
			t.Errorf("sigs = %+v, unverified = %+v", n.Sigs, n.UnverifiedSigs)
		}
		if err := CheckQuorum(n, 1, w1.verifier, w2.verifier); err != nil {
			t.Errorf("quorum 1: %v", err)
		}
		err = CheckQuorum(n, 2, w1.verifier, w2.verifier)
		if qe, ok := errors.AsType[*QuorumError](err); !ok || qe.Have != 1 || qe.Want != 2 {
			t.Errorf("quorum 2: %v", err)
		}
	})

	tests := []struct {
		name      string
		signed    func() []byte
		log       note.Verifier
		witnesses []note.Verifier
		want      error
	}{
		{"only a witness signed", func() []byte { return signCheckpoint(t, cp, w1.signer) },
			log.verifier, []note.Verifier{w1.verifier}, ErrUnverified},
		{"unsigned by any known key", func() []byte { return signCheckpoint(t, cp, stranger.signer) },
			log.verifier, nil, ErrUnverified},
		{"impostor key under the log's name", func() []byte { return signCheckpoint(t, cp, impostor.signer) },
			log.verifier, nil, ErrUnverified},
		{"text altered after signing", func() []byte {
			return bytes.Replace(signCheckpoint(t, cp, log.signer), []byte("\n42\n"), []byte("\n43\n"), 1)
		}, log.verifier, nil, ErrUnverified},
		{"witness cosignature altered", func() []byte {
			b := signCheckpoint(t, cp, log.signer, w1.signer)
			return corruptLastSig(t, b)
		}, log.verifier, []note.Verifier{w1.verifier}, ErrUnverified},
		{"origin is not the key name", func() []byte {
			other := cp
			other.Origin = "elsewhere.example/log"
			return signCheckpoint(t, other, log.signer)
		}, log.verifier, nil, ErrUnverified},
		{"signed text is not a checkpoint", func() []byte {
			b, err := note.Sign(&note.Note{Text: "hello\n"}, log.signer)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, log.verifier, nil, ErrMalformed},
		{"no signatures", func() []byte { return append(cp.Marshal(), '\n') }, log.verifier, nil, ErrMalformed},
		{"garbage", func() []byte { return []byte("not a note") }, log.verifier, nil, ErrMalformed},
		{"nil log verifier", func() []byte { return signCheckpoint(t, cp, log.signer) }, nil, nil, ErrInvalid},
		{"duplicate witness", func() []byte { return signCheckpoint(t, cp, log.signer) },
			log.verifier, []note.Verifier{w1.verifier, w1.verifier}, ErrInvalid},
		{"witness is the log", func() []byte { return signCheckpoint(t, cp, log.signer) },
			log.verifier, []note.Verifier{log.verifier}, ErrInvalid},
		{"nil witness", func() []byte { return signCheckpoint(t, cp, log.signer) },
			log.verifier, []note.Verifier{nil}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, n, err := OpenCheckpoint(tt.signed(), tt.log, tt.witnesses...)
			if !errors.Is(err, tt.want) || n != nil {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
		})
	}

	t.Run("origin error details", func(t *testing.T) {
		other := cp
		other.Origin = "elsewhere.example/log"
		_, _, err := OpenCheckpoint(signCheckpoint(t, other, log.signer), log.verifier)
		oe, ok := errors.AsType[*OriginError](err)
		if !ok || oe.Origin != other.Origin || oe.KeyName != testOrigin {
			t.Errorf("error = %v, want *OriginError", err)
		}
	})
	t.Run("invalid signature details", func(t *testing.T) {
		b := bytes.Replace(signCheckpoint(t, cp, log.signer), []byte("\n42\n"), []byte("\n43\n"), 1)
		_, _, err := OpenCheckpoint(b, log.verifier)
		if ie, ok := errors.AsType[*note.InvalidSignatureError](err); !ok || ie.Name != testOrigin {
			t.Errorf("error = %v, want a wrapped *note.InvalidSignatureError", err)
		}
	})
}

// corruptLastSig flips a bit in the last byte of the last signature's
// signature bytes, keeping its key ID.
func corruptLastSig(t testing.TB, signed []byte) []byte {
	t.Helper()
	b := bytes.Clone(signed)
	i := bytes.LastIndexByte(b[:len(b)-1], ' ')
	sig := b[i+1 : len(b)-1]
	// Change a character in the middle of the base64, past the key ID.
	j := len(sig) / 2
	if sig[j] == 'A' {
		sig[j] = 'B'
	} else {
		sig[j] = 'A'
	}
	return b
}

func TestCheckQuorum(t *testing.T) {
	log := newLogParty(t, testOrigin, 1)
	ws := []testParty{
		newWitnessParty(t, "w1.example", 11),
		newWitnessParty(t, "w2.example", 12),
		newWitnessParty(t, "w3.example", 13),
	}
	cp := Checkpoint{Origin: testOrigin, Size: 1, Hash: LeafHash(nil)}
	signed := signCheckpoint(t, cp, log.signer, ws[0].signer, ws[2].signer)
	all := []note.Verifier{ws[0].verifier, ws[1].verifier, ws[2].verifier}
	_, n, err := OpenCheckpoint(signed, log.verifier, all...)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		quorum    int
		witnesses []note.Verifier
		want      error
	}{
		{"zero", 0, nil, nil},
		{"two of three", 2, all, nil},
		{"three of three", 3, all, ErrQuorum},
		{"one of the absent one", 1, all[1:2], ErrQuorum},
		{"a witness listed twice counts once", 2, []note.Verifier{all[0], all[0], all[1]}, ErrQuorum},
		{"quorum above the list", 4, all, ErrInvalid},
		{"negative", -1, all, ErrInvalid},
		{"nil witness", 1, []note.Verifier{nil}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckQuorum(n, tt.quorum, tt.witnesses...)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("CheckQuorum = %v, want %v", err, tt.want)
			}
		})
	}
}

// splitNote accepts what note.Open parses and rejects what it refuses.
func TestSplitNoteAgreesWithNoteOpen(t *testing.T) {
	log := newLogParty(t, testOrigin, 1)
	good := signCheckpoint(t, Checkpoint{Origin: testOrigin, Size: 1, Hash: LeafHash(nil)}, log.signer)
	inputs := [][]byte{
		good,
		good[:len(good)-1],
		bytes.Replace(good, []byte("— "), []byte("-- "), 1),
		bytes.Replace(good, []byte("— "+testOrigin), []byte("— bad+name"), 1),
		append(bytes.Clone(good), "— x AAAA\n"...),
		append(bytes.Clone(good), "— x AAAAAAA=\n"...),
		append([]byte("a\x01"), good...),
		append([]byte("a\x7f"), good...),
		[]byte("\n\n— x AAAAAAA=\n"),
		[]byte("a\n\n\n— x AAAAAAA=\n"),
	}
	v := note.VerifierList(log.verifier)
	for i, in := range inputs {
		_, _, splitErr := splitNote(in)
		_, openErr := note.Open(in, v)
		_, unverified := errors.AsType[*note.UnverifiedNoteError](openErr)
		_, invalid := errors.AsType[*note.InvalidSignatureError](openErr)
		openParsed := openErr == nil || unverified || invalid
		if (splitErr == nil) != openParsed {
			t.Errorf("input %d %q: splitNote error %v, note.Open error %v", i, in, splitErr, openErr)
		}
	}
}
