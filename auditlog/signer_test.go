package auditlog

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// NewNoteSigner, given only a crypto.Signer, signs exactly as note.NewSigner
// does with the private key bytes, and note's own verifier accepts it.
func TestNoteSignerMatchesNoteSigner(t *testing.T) {
	k := testKey(7)
	pub := k.Public().(ed25519.PublicKey)
	ours, err := NewNoteSigner(testOrigin, custodySigner{k})
	if err != nil {
		t.Fatal(err)
	}
	skey := fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", testOrigin, ours.KeyHash(),
		base64.StdEncoding.EncodeToString(append([]byte{1}, k.Seed()...)))
	theirs, err := note.NewSigner(skey) // fails unless our key hash is the standard one
	if err != nil {
		t.Fatalf("note.NewSigner with our key hash: %v", err)
	}
	n := &note.Note{Text: string(Checkpoint{Origin: testOrigin, Size: 3, Hash: LeafHash(nil)}.Marshal())}
	a, err := note.Sign(n, ours)
	if err != nil {
		t.Fatal(err)
	}
	b, err := note.Sign(n, theirs)
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Errorf("signed notes differ:\n%s\n%s", a, b)
	}
	vkey, err := note.NewEd25519VerifierKey(testOrigin, pub)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(a, note.VerifierList(v)); err != nil {
		t.Errorf("note.Open: %v", err)
	}
	if got, want := ours.KeyHash(), KeyID(testOrigin, SigTypeEd25519, pub); got != want {
		t.Errorf("KeyHash = %08x, want %08x", got, want)
	}
}

func TestSignerRejectsKeys(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return testTime }
	good := custodySigner{testKey(1)}
	for _, name := range []string{"", "has space", "has+plus", "tab\tname", "\xff"} {
		if _, err := NewNoteSigner(name, good); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewNoteSigner(%q) error = %v", name, err)
		}
		if _, err := NewCosigner(name, good, now); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewCosigner(%q) error = %v", name, err)
		}
	}
	if _, err := NewNoteSigner("n", ec); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewNoteSigner(ECDSA) error = %v", err)
	}
	if _, err := NewCosigner("n", ec, now); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewCosigner(ECDSA) error = %v", err)
	}
	if _, err := NewNoteSigner("n", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewNoteSigner(nil) error = %v", err)
	}
	if _, err := NewCosigner("n", good, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewCosigner(nil clock) error = %v", err)
	}
}

// A cosignature is checked here against the spec's definition directly:
// key ID, timestamp, and an Ed25519 signature over the cosigned message.
func TestCosignatureFormat(t *testing.T) {
	k := testKey(9)
	pub := k.Public().(ed25519.PublicKey)
	s, err := NewCosigner(testWitness, custodySigner{k}, func() time.Time { return time.Unix(1679315147, 999) })
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(append([]byte(testWitness+"\n\x04"), pub...))
	if got, want := s.KeyHash(), binary.BigEndian.Uint32(sum[:]); got != want {
		t.Errorf("KeyHash = %08x, want %08x", got, want)
	}
	vkey := CosignatureVerifierKey(testWitness, pub)
	wantVkey := fmt.Sprintf("%s+%08x+%s", testWitness, s.KeyHash(), base64.StdEncoding.EncodeToString(append([]byte{4}, pub...)))
	if vkey != wantVkey {
		t.Errorf("vkey = %q, want %q", vkey, wantVkey)
	}
	text := "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
	sig, err := s.Sign([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != 72 {
		t.Fatalf("signature is %d bytes, want 72", len(sig))
	}
	if ts := binary.BigEndian.Uint64(sig); ts != 1679315147 {
		t.Errorf("timestamp = %d", ts)
	}
	// The message from the example in c2sp.org/tlog-cosignature.
	msg := "cosignature/v1\ntime 1679315147\n" + text
	if !ed25519.Verify(pub, []byte(msg), sig[8:]) {
		t.Error("signature does not verify over the cosignature/v1 message")
	}

	v, err := NewCosignatureVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if v.Name() != testWitness || v.KeyHash() != s.KeyHash() {
		t.Errorf("verifier is %s+%08x", v.Name(), v.KeyHash())
	}
	if !v.Verify([]byte(text), sig) {
		t.Error("verifier rejects a good cosignature")
	}
	bad := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), sig...)) }
	rejects := map[string]struct {
		msg, sig []byte
	}{
		"other text":          {[]byte("example.com/behind-the-sofa\n20852164\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"), sig},
		"other timestamp":     {[]byte(text), bad(func(b []byte) []byte { b[7]++; return b })},
		"flipped signature":   {[]byte(text), bad(func(b []byte) []byte { b[40] ^= 1; return b })},
		"short":               {[]byte(text), sig[:71]},
		"long":                {[]byte(text), append(append([]byte(nil), sig...), 0)},
		"plain Ed25519":       {[]byte(text), append(make([]byte, 8), ed25519.Sign(k, []byte(text))...)},
		"not a checkpoint":    {[]byte("hello\n"), sig},
		"timestamp above max": {[]byte(text), bad(func(b []byte) []byte { binary.BigEndian.PutUint64(b, math.MaxInt64+1); return b })},
	}
	for name, r := range rejects {
		if v.Verify(r.msg, r.sig) {
			t.Errorf("%s: verifier accepts", name)
		}
	}
}

func TestCosignerRefuses(t *testing.T) {
	k := custodySigner{testKey(9)}
	s, err := NewCosigner(testWitness, k, func() time.Time { return testTime })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign([]byte("not\na checkpoint\n")); !errors.Is(err, ErrMalformed) {
		t.Errorf("Sign(non-checkpoint) error = %v", err)
	}
	old, err := NewCosigner(testWitness, k, func() time.Time { return time.Unix(-1, 0) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Sign(Checkpoint{Origin: "o", Hash: EmptyRoot()}.Marshal()); err == nil {
		t.Error("Sign before 1970 succeeded")
	}
}

func TestCosignatureTime(t *testing.T) {
	log := newLogParty(t, testOrigin, 1)
	w := newWitnessParty(t, testWitness, 2)
	signed := signCheckpoint(t, Checkpoint{Origin: testOrigin, Size: 1, Hash: LeafHash(nil)}, log.signer, w.signer)
	_, n, err := OpenCheckpoint(signed, log.verifier, w.verifier)
	if err != nil {
		t.Fatal(err)
	}
	var cosig note.Signature
	for _, s := range n.Sigs {
		if s.Name == testWitness {
			cosig = s
		}
	}
	got, err := CosignatureTime(cosig)
	if err != nil || !got.Equal(testTime) {
		t.Errorf("CosignatureTime = %v, %v; want %v", got, err, testTime)
	}
	// The log's plain Ed25519 signature is not a cosignature.
	if _, err := CosignatureTime(n.Sigs[0]); !errors.Is(err, ErrMalformed) {
		t.Errorf("CosignatureTime(log signature) error = %v", err)
	}
	mk := func(hash uint32, raw []byte) note.Signature {
		return note.Signature{Name: testWitness, Hash: hash, Base64: base64.StdEncoding.EncodeToString(raw)}
	}
	raw := make([]byte, 76)
	binary.BigEndian.PutUint32(raw, 7)
	binary.BigEndian.PutUint64(raw[4:], math.MaxInt64+1)
	for name, s := range map[string]note.Signature{
		"bad base64":          {Name: testWitness, Hash: 7, Base64: "!!"},
		"key ID mismatch":     mk(8, raw),
		"timestamp above max": mk(7, raw),
		"short":               mk(7, raw[:75]),
	} {
		if _, err := CosignatureTime(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error = %v", name, err)
		}
	}
}

func TestNewCosignatureVerifierRejects(t *testing.T) {
	pub := testKey(3).Public().(ed25519.PublicKey)
	good := CosignatureVerifierKey(testWitness, pub)
	ed25519Vkey, err := note.NewEd25519VerifierKey(testWitness, pub)
	if err != nil {
		t.Fatal(err)
	}
	hashOf := func(key []byte) string {
		return fmt.Sprintf("%08x", KeyID(testWitness, key[0], key[1:]))
	}
	short := append([]byte{4}, pub[:31]...)
	for name, vkey := range map[string]string{
		"empty":              "",
		"ed25519 note key":   ed25519Vkey,
		"wrong hash":         testWitness + "+00000000+" + base64.StdEncoding.EncodeToString(append([]byte{4}, pub...)),
		"short key":          testWitness + "+" + hashOf(short) + "+" + base64.StdEncoding.EncodeToString(short),
		"bad name":           "bad name" + good[len(testWitness):],
		"no key":             testWitness + "+" + good[len(testWitness)+1:len(testWitness)+9],
		"non-hex hash":       testWitness + "+zzzzzzzz+" + good[len(testWitness)+10:],
		"short hash":         testWitness + "+1234+" + good[len(testWitness)+10:],
		"bad base64":         good + "!",
		"wrong key for name": "other.example" + good[len(testWitness):],
	} {
		if _, err := NewCosignatureVerifier(vkey); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: NewCosignatureVerifier(%q) error = %v", name, vkey, err)
		}
	}
	if _, err := NewCosignatureVerifier(CosignatureVerifierKey(testWitness, pub[:31])); !errors.Is(err, ErrMalformed) {
		t.Errorf("vkey of a 31-byte key accepted: %v", err)
	}
}

func TestHasherMatchesRFC6962(t *testing.T) {
	l, r := LeafHash([]byte("l")), LeafHash([]byte("r"))
	want := NodeHash(l, r)
	if got := (hasher{}).HashChildren(l[:], r[:]); string(got) != string(want[:]) {
		t.Errorf("HashChildren = %x, want %x", got, want)
	}
	if got := (hasher{}).HashLeaf([]byte("l")); string(got) != string(l[:]) {
		t.Errorf("HashLeaf = %x", got)
	}
	e := EmptyRoot()
	if got := (hasher{}).EmptyRoot(); string(got) != string(e[:]) || (hasher{}).Size() != 32 {
		t.Errorf("EmptyRoot = %x", got)
	}
}
