package auditlog

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// testProof returns a proof of entry 2 in a 5-entry log, cosigned by w1
// and w2 of three witnesses, and the verifiers.
func testProof(t testing.TB) (Proof, [][]byte, note.Verifier, []note.Verifier) {
	t.Helper()
	log := newLogParty(t, testOrigin, 1)
	w1 := newWitnessParty(t, "w1.example", 2)
	w2 := newWitnessParty(t, "w2.example", 3)
	w3 := newWitnessParty(t, "w3.example", 4)
	entries := [][]byte{[]byte("e0"), []byte("e1"), []byte("e2"), []byte("e3"), []byte("e4")}
	l := make([]Hash, len(entries))
	for i, e := range entries {
		l[i] = LeafHash(e)
	}
	cp := Checkpoint{Origin: testOrigin, Size: 5, Hash: MerkleRoot(l)}
	// Inclusion proof of entry 2 in 5: sibling leaf 3, node (0,1), leaf 4.
	path := []Hash{l[3], NodeHash(l[0], l[1]), l[4]}
	p := Proof{
		Extra:      entries[2],
		Index:      2,
		Path:       path,
		Checkpoint: signCheckpoint(t, cp, log.signer, w1.signer, w2.signer),
	}
	return p, entries, log.verifier, []note.Verifier{w1.verifier, w2.verifier, w3.verifier}
}

func TestProofVerify(t *testing.T) {
	p, entries, log, ws := testProof(t)
	cp, err := p.Verify(nil, log, 2, ws...)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 5 || cp.Origin != testOrigin {
		t.Errorf("checkpoint = %+v", cp)
	}
	if _, err := p.Verify(entries[2], log, 0); err != nil {
		t.Errorf("explicit entry, no witnesses: %v", err)
	}

	noExtra := p
	noExtra.Extra = nil
	tests := []struct {
		name   string
		p      Proof
		entry  []byte
		quorum int
		ws     []note.Verifier
		want   error
	}{
		{"other entry", p, entries[3], 0, nil, ErrProof},
		{"extra replaced", Proof{Extra: []byte("e9"), Index: 2, Path: p.Path, Checkpoint: p.Checkpoint}, nil, 0, nil, ErrProof},
		{"other index", Proof{Extra: p.Extra, Index: 3, Path: p.Path, Checkpoint: p.Checkpoint}, nil, 0, nil, ErrProof},
		{"index past size", Proof{Extra: p.Extra, Index: 5, Path: p.Path, Checkpoint: p.Checkpoint}, nil, 0, nil, ErrProof},
		{"short path", Proof{Extra: p.Extra, Index: 2, Path: p.Path[:2], Checkpoint: p.Checkpoint}, nil, 0, nil, ErrProof},
		{"quorum of three", p, nil, 3, ws, ErrQuorum},
		{"quorum of the absent witness", p, nil, 1, ws[2:], ErrQuorum},
		{"quorum above witnesses", p, nil, 2, ws[:1], ErrInvalid},
		{"no entry, no extra", noExtra, nil, 0, nil, ErrMalformed},
		{"checkpoint altered", Proof{Extra: p.Extra, Index: 2, Path: p.Path,
			Checkpoint: bytes.Replace(p.Checkpoint, []byte("\n5\n"), []byte("\n6\n"), 1)}, nil, 0, nil, ErrUnverified},
		{"wrong log key", p, nil, 0, nil, ErrUnverified},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lv := log
			if tt.name == "wrong log key" {
				lv = newLogParty(t, testOrigin, 99).verifier
			}
			_, err := tt.p.Verify(tt.entry, lv, tt.quorum, tt.ws...)
			if !errors.Is(err, tt.want) {
				t.Errorf("Verify error = %v, want %v", err, tt.want)
			}
		})
	}
	// An empty entry is an entry, if asked for explicitly.
	e := []Hash{LeafHash(nil)}
	empty := Proof{Index: 0, Checkpoint: signCheckpoint(t, Checkpoint{Origin: testOrigin, Size: 1, Hash: e[0]}, newLogParty(t, testOrigin, 1).signer)}
	if _, err := empty.Verify([]byte{}, log, 0); err != nil {
		t.Errorf("empty entry: %v", err)
	}
}

func TestProofRoundTrip(t *testing.T) {
	p, _, _, _ := testProof(t)
	b := p.Marshal()
	lines := strings.Split(string(b), "\n")
	if lines[0] != "c2sp.org/tlog-proof@v1" || lines[1] != "extra ZTI=" || lines[2] != "index 2" ||
		lines[3] != p.Path[0].String() || lines[6] != "" || lines[7] != testOrigin {
		t.Errorf("Marshal =\n%s", b)
	}
	if !bytes.HasSuffix(b, p.Checkpoint) {
		t.Error("checkpoint is not verbatim at the end")
	}
	q, err := ParseProof(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(q.Extra) != string(p.Extra) || q.Index != p.Index || len(q.Path) != len(p.Path) ||
		string(q.Checkpoint) != string(p.Checkpoint) {
		t.Errorf("ParseProof = %+v", q)
	}
	for i := range p.Path {
		if q.Path[i] != p.Path[i] {
			t.Errorf("path[%d] differs", i)
		}
	}
	if !bytes.Equal(q.Marshal(), b) {
		t.Error("re-marshal differs")
	}
	// Without extra data and with an empty path.
	bare := Proof{Index: 0, Checkpoint: p.Checkpoint}
	bb := bare.Marshal()
	if !bytes.HasPrefix(bb, []byte("c2sp.org/tlog-proof@v1\nindex 0\n\n")) {
		t.Errorf("bare Marshal = %q", bb)
	}
	got, err := ParseProof(bb)
	if err != nil || got.Extra != nil || got.Path != nil || !bytes.Equal(got.Marshal(), bb) {
		t.Errorf("ParseProof(bare) = %+v, %v", got, err)
	}
}

func TestParseProofRejects(t *testing.T) {
	p, _, _, _ := testProof(t)
	good := string(p.Marshal())
	h := p.Path[0].String()
	cpNote := string(p.Checkpoint)
	long := "c2sp.org/tlog-proof@v1\nindex 0\n" + strings.Repeat(h+"\n", 65) + "\n" + cpNote
	tests := map[string]string{
		"empty":                  "",
		"wrong header":           strings.Replace(good, "@v1", "@v2", 1),
		"header only":            "c2sp.org/tlog-proof@v1\n",
		"empty extra":            "c2sp.org/tlog-proof@v1\nextra \nindex 0\n\n" + cpNote,
		"unpadded extra":         "c2sp.org/tlog-proof@v1\nextra ZTI\nindex 0\n\n" + cpNote,
		"non-canonical extra":    "c2sp.org/tlog-proof@v1\nextra ZTJ=\nindex 0\n\n" + cpNote,
		"extra with CR":          "c2sp.org/tlog-proof@v1\nextra ZT\rI=\nindex 0\n\n" + cpNote,
		"extra after index":      "c2sp.org/tlog-proof@v1\nindex 0\nextra ZTI=\n\n" + cpNote,
		"no index":               "c2sp.org/tlog-proof@v1\n\n" + cpNote,
		"leading zero index":     "c2sp.org/tlog-proof@v1\nindex 01\n\n" + cpNote,
		"index with two spaces":  "c2sp.org/tlog-proof@v1\nindex  1\n\n" + cpNote,
		"bad hash line":          "c2sp.org/tlog-proof@v1\nindex 1\n" + h[:43] + "\n\n" + cpNote,
		"65 hashes":              long,
		"no blank line":          "c2sp.org/tlog-proof@v1\nindex 1\n" + h + "\n",
		"no checkpoint":          "c2sp.org/tlog-proof@v1\nindex 1\n\n",
		"unsigned checkpoint":    "c2sp.org/tlog-proof@v1\nindex 1\n\n" + string(Checkpoint{Origin: "o", Hash: EmptyRoot()}.Marshal()),
		"checkpoint not a ckpt":  "c2sp.org/tlog-proof@v1\nindex 1\n\nhello\n\n— o AAAAAAA=\n",
		"trailing garbage":       good + "x",
		"CRLF":                   strings.ReplaceAll(good, "\n", "\r\n"),
		"index line, no newline": "c2sp.org/tlog-proof@v1\nindex 1",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseProof([]byte(in)); !errors.Is(err, ErrMalformed) {
				t.Errorf("error = %v, want ErrMalformed", err)
			}
		})
	}
}
