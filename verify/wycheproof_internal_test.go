package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// wycheproofModule is fetched through the Go module proxy, as Go's own
// crypto tests do; it is not a dependency in go.mod.
const wycheproofModule = "github.com/C2SP/wycheproof@v0.0.0-20250901140545-b51abcfb8daf"

// wycheproofDir downloads the vectors and returns their testvectors_v1
// directory. Without network it fails, unless CUSTOS_OFFLINE=1.
func wycheproofDir(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", wycheproofModule)
	cmd.Dir = t.TempDir() // outside the module: go.mod is never touched
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if err == nil {
		err = json.Unmarshal(out, &info)
	}
	if err != nil || info.Dir == "" {
		if os.Getenv("CUSTOS_OFFLINE") == "1" {
			t.Skipf("wycheproof unavailable offline: %v %s", err, info.Error)
		}
		t.Fatalf("go mod download %s: %v %s", wycheproofModule, err, info.Error)
	}
	return filepath.Join(info.Dir, "testvectors_v1")
}

func readVectors(t *testing.T, dir, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

type wycheproofTest struct {
	TcID    int      `json:"tcId"`
	Comment string   `json:"comment"`
	Msg     string   `json:"msg"`
	Sig     string   `json:"sig"`
	JWS     string   `json:"jws"`
	Result  string   `json:"result"` // valid, invalid, acceptable
	Flags   []string `json:"flags"`
}

// checkResult asserts err against a Wycheproof result. "acceptable" vectors
// (none in these files today) must be refused: custos takes the strict side.
func checkResult(t *testing.T, tc wycheproofTest, err error) {
	t.Helper()
	switch tc.Result {
	case "valid":
		if err != nil {
			t.Errorf("tcId %d (%s %v): valid vector refused: %v", tc.TcID, tc.Comment, tc.Flags, err)
		}
	case "invalid", "acceptable":
		if err == nil {
			t.Errorf("tcId %d (%s %v): %s vector accepted", tc.TcID, tc.Comment, tc.Flags, tc.Result)
		}
	default:
		t.Fatalf("tcId %d: unknown result %q", tc.TcID, tc.Result)
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWycheproofEd25519 runs every Ed25519 vector through verifySignature.
func TestWycheproofEd25519(t *testing.T) {
	var file struct {
		TestGroups []struct {
			PublicKey struct{ PK string } `json:"publicKey"`
			Tests     []wycheproofTest    `json:"tests"`
		} `json:"testGroups"`
	}
	readVectors(t, wycheproofDir(t), "ed25519_test.json", &file)
	n := 0
	for _, g := range file.TestGroups {
		pub := ed25519.PublicKey(unhex(t, g.PublicKey.PK))
		for _, tc := range g.Tests {
			checkResult(t, tc, verifySignature(AlgEdDSA, pub, unhex(t, tc.Msg), unhex(t, tc.Sig)))
			n++
		}
	}
	if n < 150 {
		t.Fatalf("ran %d vectors, want at least 150", n)
	}
}

// TestWycheproofES256 runs every P-256/SHA-256 IEEE P1363 (raw r‖s, as in
// JWS) vector through verifySignature.
func TestWycheproofES256(t *testing.T) {
	var file struct {
		TestGroups []struct {
			PublicKey struct{ Uncompressed string } `json:"publicKey"`
			SHA       string                        `json:"sha"`
			Tests     []wycheproofTest              `json:"tests"`
		} `json:"testGroups"`
	}
	readVectors(t, wycheproofDir(t), "ecdsa_secp256r1_sha256_p1363_test.json", &file)
	n := 0
	for _, g := range file.TestGroups {
		if g.SHA != "SHA-256" {
			t.Fatalf("unexpected hash %q", g.SHA)
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), unhex(t, g.PublicKey.Uncompressed))
		if err != nil {
			t.Fatalf("vector public key: %v", err)
		}
		for _, tc := range g.Tests {
			checkResult(t, tc, verifySignature(AlgES256, pub, unhex(t, tc.Msg), unhex(t, tc.Sig)))
			n++
		}
	}
	if n < 250 {
		t.Fatalf("ran %d vectors, want at least 250", n)
	}
}

// TestWycheproofJWS runs the compact ES256 cases of
// json_web_signature_test.json through the same steps Verify takes for the
// serialization and the signature: splitCompact, the header's alg, and
// verifySignature. The vectors' headers carry no typ and their payload is
// "foo", so the header and claims policies (tested by TestAttack) are not
// applied. Groups for HS*, RS*, PS*, ES521 and encryption keys are skipped:
// custos refuses those algorithms outright, before any signature check.
func TestWycheproofJWS(t *testing.T) {
	var file struct {
		TestGroups []struct {
			Comment string           `json:"comment"`
			Public  json.RawMessage  `json:"public"`
			Tests   []wycheproofTest `json:"tests"`
		} `json:"testGroups"`
	}
	readVectors(t, wycheproofDir(t), "json_web_signature_test.json", &file)
	n := 0
	for _, g := range file.TestGroups {
		var jwk jose.JSONWebKey
		if len(g.Public) == 0 || jwk.UnmarshalJSON(g.Public) != nil || jwk.Algorithm != AlgES256 {
			continue
		}
		pub, ok := jwk.Key.(*ecdsa.PublicKey)
		if !ok {
			t.Fatalf("group %s: ES256 key is %T", g.Comment, jwk.Key)
		}
		for _, tc := range g.Tests {
			checkResult(t, tc, verifyCompactSignature(tc.JWS, pub))
			n++
		}
	}
	if n < 35 {
		t.Fatalf("ran %d JWS vectors, want at least 35", n)
	}
}

// verifyCompactSignature is Verify's path up to the signature, without the
// header policy: strict split, alg from a strict JSON header, signature.
func verifyCompactSignature(token string, pub crypto.PublicKey) error {
	parts, err := splitCompact(token)
	if err != nil {
		return err
	}
	h, err := strictObject(parts.header)
	if err != nil {
		return err
	}
	if alg, _ := jsonString(h["alg"]); alg != AlgES256 {
		return errKeyType
	}
	return verifySignature(AlgES256, pub, []byte(parts.signingInput), parts.signature)
}

// TestRFC8037 checks the Ed25519 JWS of RFC 8037 Appendix A.4 with the key
// of A.1, and the key's RFC 7638 thumbprint (A.3).
func TestRFC8037(t *testing.T) {
	const (
		d      = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
		x      = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
		jws    = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
		thumb  = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
		signed = "Example of Ed25519 signing"
	)
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON([]byte(`{"kty":"OKP","crv":"Ed25519","x":"` + x + `"}`)); err != nil {
		t.Fatal(err)
	}
	pub := jwk.Key.(ed25519.PublicKey)
	seed, err := b64.DecodeString(d)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(ed25519.NewKeyFromSeed(seed).Public()) {
		t.Fatal("A.1: d does not derive x")
	}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if got := b64.EncodeToString(tp); got != thumb {
		t.Fatalf("thumbprint = %s, want %s", got, thumb)
	}
	parts, err := splitCompact(jws)
	if err != nil {
		t.Fatal(err)
	}
	if string(parts.payload) != signed || string(parts.header) != `{"alg":"EdDSA"}` {
		t.Fatalf("parts = %q %q", parts.header, parts.payload)
	}
	if err := verifySignature(AlgEdDSA, pub, []byte(parts.signingInput), parts.signature); err != nil {
		t.Fatalf("A.4 signature: %v", err)
	}
	// Signing is deterministic: the private key reproduces the signature.
	if got := ed25519.Sign(ed25519.NewKeyFromSeed(seed), []byte(parts.signingInput)); string(got) != string(parts.signature) {
		t.Fatal("A.4 signature not reproduced")
	}
	parts.signature[0] ^= 1
	if verifySignature(AlgEdDSA, pub, []byte(parts.signingInput), parts.signature) == nil {
		t.Fatal("altered signature verified")
	}
}
