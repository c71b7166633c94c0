package auditlog

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"))
	f.Add([]byte("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next\n— x\n"))
	f.Add([]byte("o\n01\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"))
	f.Add([]byte("o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=\n"))
	f.Add([]byte("o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		c, err := ParseCheckpoint(text)
		if err != nil {
			return
		}
		if m := c.Marshal(); !bytes.Equal(m, text) {
			t.Fatalf("Marshal(ParseCheckpoint(%q)) = %q", text, m)
		}
	})
}

func FuzzParseTilePath(f *testing.F) {
	for _, p := range []string{
		"tile/0/000", "tile/1/x001/x234/067", "tile/2/000.p/1", "tile/entries/x001/234.p/255",
		"tile/63/x018/x446/x744/x073/x709/x551/615", "tile/0/x000/001", "tile/00/000", "tile/0/000.p/256",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		info, err := ParseTilePath(p)
		if err != nil {
			return
		}
		var again string
		if info.Entries {
			again = EntriesPath(info.Index, info.Width)
		} else {
			again = TilePath(info.Level, info.Index, info.Width)
		}
		if again != p {
			t.Fatalf("ParseTilePath(%q) = %+v, which encodes as %q", p, info, again)
		}
	})
}

func FuzzParseEntryBundle(f *testing.F) {
	f.Add([]byte{0, 3, 'a', 'b', 'c'})
	f.Add([]byte{0, 0, 0, 1, 'x'})
	f.Add([]byte{0, 3, 'a'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseEntryBundle(b)
		if err != nil {
			return
		}
		if len(entries) < 1 || len(entries) > TileWidth {
			t.Fatalf("%d entries", len(entries))
		}
		again, err := AppendEntryBundle(nil, entries...)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("AppendEntryBundle(ParseEntryBundle(%x)) = %x, %v", b, again, err)
		}
	})
}

func FuzzParseProof(f *testing.F) {
	p, _, _, _ := testProof(f)
	f.Add(p.Marshal())
	p.Extra = nil
	f.Add(p.Marshal())
	p.Path = nil
	f.Add(p.Marshal())
	f.Add([]byte("c2sp.org/tlog-proof@v1\nextra \nindex 0\n\no\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— o AAAAAAA=\n"))
	f.Add([]byte("c2sp.org/tlog-proof@v1\nindex 00\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseProof(b)
		if err != nil {
			return
		}
		if m := p.Marshal(); !bytes.Equal(m, b) {
			t.Fatalf("Marshal(ParseProof(%q)) = %q", b, m)
		}
	})
}

// FuzzCosignatureVerifier: parsing verifier keys, verifying cosignatures,
// opening notes with a cosignature verifier and reading cosignature times
// never panic, and a fuzzed signature never verifies under a real key
// unless it is well-formed over checkpoint text.
func FuzzCosignatureVerifier(f *testing.F) {
	w := newWitnessParty(f, testWitness, 2)
	log := newLogParty(f, testOrigin, 1)
	good := CosignatureVerifierKey(testWitness, w.pub)
	cp := Checkpoint{Origin: testOrigin, Size: 1, Hash: LeafHash(nil)}
	text := cp.Marshal()
	sig, err := w.signer.Sign(text)
	if err != nil {
		f.Fatal(err)
	}
	vkey, _ := note.NewEd25519VerifierKey(testOrigin, log.pub)
	f.Add(good, text, sig)
	f.Add(vkey, text, sig[:71])
	f.Add("a+00000000+BA==", []byte("x\n"), []byte{})
	f.Add(good[:len(good)-2], text, append(sig, 0))
	signed := signCheckpoint(f, cp, log.signer, w.signer)
	f.Add(good, signed, sig)
	f.Fuzz(func(t *testing.T, vkey string, msg, sig []byte) {
		if v, err := NewCosignatureVerifier(vkey); err == nil {
			v.Verify(msg, sig)
			if _, err := note.Open(msg, note.VerifierList(v)); err == nil {
				if _, err := ParseCheckpoint(msg[:bytes.LastIndex(msg, []byte("\n\n"))+1]); err != nil {
					t.Fatalf("note with a verified cosignature over non-checkpoint text %q", msg)
				}
			}
		}
		if w.verifier.Verify(msg, sig) {
			if len(sig) != 8+ed25519.SignatureSize {
				t.Fatalf("verified a %d-byte cosignature", len(sig))
			}
			if _, err := ParseCheckpoint(msg); err != nil {
				t.Fatalf("verified a cosignature over non-checkpoint text %q", msg)
			}
		}
		_, _, _ = OpenCheckpoint(msg, log.verifier, w.verifier)
		_, _ = CosignatureTime(note.Signature{Name: testWitness, Hash: w.verifier.KeyHash(), Base64: string(sig)})
	})
}
