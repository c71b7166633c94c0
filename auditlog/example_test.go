package auditlog_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/custos-dev/custos/auditlog"
	"golang.org/x/mod/sumdb/note"
)

// Keys for the examples. In real use the log's private key stays in
// custos's custody and the witness's with the witness; an auditor has only
// the two verifier keys.
func logKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
}

func witnessKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize))
}

const (
	logName     = "custos.example/audit"
	witnessName = "auditor.example/witness"
)

// signedCheckpoint plays the log and a witness: it signs a checkpoint of a
// two-entry log and has the witness cosign it.
func signedCheckpoint(entries [][]byte) []byte {
	cp := auditlog.Checkpoint{
		Origin: logName,
		Size:   uint64(len(entries)),
		Hash:   auditlog.NodeHash(auditlog.LeafHash(entries[0]), auditlog.LeafHash(entries[1])),
	}
	logSigner, err := auditlog.NewNoteSigner(logName, logKey())
	if err != nil {
		panic(err)
	}
	cosigner, err := auditlog.NewCosigner(witnessName, witnessKey(), func() time.Time {
		return time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	})
	if err != nil {
		panic(err)
	}
	signed, err := note.Sign(&note.Note{Text: string(cp.Marshal())}, logSigner, cosigner)
	if err != nil {
		panic(err)
	}
	return signed
}

// An auditor opens a checkpoint with the log's key and a witness's key, and
// reads when the witness cosigned it.
func ExampleOpenCheckpoint() {
	signed := signedCheckpoint([][]byte{[]byte("event 0"), []byte("event 1")})

	// What the auditor was given: two verifier keys.
	logVkey, _ := note.NewEd25519VerifierKey(logName, logKey().Public().(ed25519.PublicKey))
	witnessVkey := auditlog.CosignatureVerifierKey(witnessName, witnessKey().Public().(ed25519.PublicKey))

	logVerifier, err := note.NewVerifier(logVkey)
	if err != nil {
		panic(err)
	}
	witness, err := auditlog.NewCosignatureVerifier(witnessVkey)
	if err != nil {
		panic(err)
	}
	cp, n, err := auditlog.OpenCheckpoint(signed, logVerifier, witness)
	if err != nil {
		fmt.Println("rejected:", err)
		return
	}
	if err := auditlog.CheckQuorum(n, 1, witness); err != nil {
		fmt.Println("rejected:", err)
		return
	}
	fmt.Printf("%s at size %d, root %v\n", cp.Origin, cp.Size, cp.Hash)
	for _, sig := range n.Sigs {
		if sig.Name == witnessName {
			t, _ := auditlog.CosignatureTime(sig)
			fmt.Println("cosigned by", sig.Name, "at", t.Format(time.RFC3339))
		}
	}

	// A checkpoint altered after signing is refused.
	forged := bytes.Replace(signed, []byte("\n2\n"), []byte("\n1\n"), 1)
	_, _, err = auditlog.OpenCheckpoint(forged, logVerifier, witness)
	fmt.Println(err)
	// Output:
	// custos.example/audit at size 2, root lZegCMOZEI3cZ/iBYp372ha+Y/y3S0KJL3Sd3gjTNko=
	// cosigned by auditor.example/witness at 2026-03-01T09:30:00Z
	// auditlog: checkpoint not verified: invalid signature for key custos.example/audit+8f291916
}

// An auditor verifies a c2sp.org/tlog-proof file custos handed out for one
// event, offline.
func ExampleProof_Verify() {
	entries := [][]byte{[]byte("event 0"), []byte("event 1")}
	file := auditlog.Proof{
		Extra:      entries[1],
		Index:      1,
		Path:       []auditlog.Hash{auditlog.LeafHash(entries[0])},
		Checkpoint: signedCheckpoint(entries),
	}.Marshal()

	// What the auditor has: the file and the two verifier keys.
	logVkey, _ := note.NewEd25519VerifierKey(logName, logKey().Public().(ed25519.PublicKey))
	logVerifier, _ := note.NewVerifier(logVkey)
	witness, _ := auditlog.NewCosignatureVerifier(
		auditlog.CosignatureVerifierKey(witnessName, witnessKey().Public().(ed25519.PublicKey)))

	p, err := auditlog.ParseProof(file)
	if err != nil {
		fmt.Println("malformed:", err)
		return
	}
	cp, err := p.Verify(nil, logVerifier, 1, witness)
	if err != nil {
		fmt.Println("rejected:", err)
		return
	}
	fmt.Printf("%q is entry %d of %s (size %d)\n", p.Extra, p.Index, cp.Origin, cp.Size)

	// The same proof does not vouch for any other event.
	_, err = p.Verify([]byte("event 2"), logVerifier, 1, witness)
	fmt.Println(err)
	// Output:
	// "event 1" is entry 1 of custos.example/audit (size 2)
	// auditlog: inclusion of entry 1 in tree of size 2: calculated root does not match the checkpoint
}
