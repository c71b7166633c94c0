package verify_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/custos-dev/custos/verify"
)

const (
	testIssuer   = "https://id.custos.test"
	testAudience = "https://shop.custos.test"
)

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var b64 = base64.RawURLEncoding

// signer mints test tokens with a private key it holds directly.
type signer struct {
	kid, alg string
	ed       ed25519.PrivateKey
	ec       *ecdsa.PrivateKey
}

func newEdSigner(t testing.TB, seed byte) signer {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	return signer{kid: thumbprint(t, priv.Public()), alg: verify.AlgEdDSA, ed: priv}
}

func newECSigner(t testing.TB) signer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: thumbprint(t, priv.Public()), alg: verify.AlgES256, ec: priv}
}

func thumbprint(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return b64.EncodeToString(tp)
}

func (s signer) publicKey() crypto.PublicKey {
	if s.ed != nil {
		return s.ed.Public()
	}
	return s.ec.Public()
}

func (s signer) key() verify.Key {
	return verify.Key{ID: s.kid, Algorithm: s.alg, Public: s.publicKey()}
}

// jwk is the public JWK custos would publish for s.
func (s signer) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: s.publicKey(), KeyID: s.kid, Algorithm: s.alg, Use: "sig"}
}

// rawSign signs input: Ed25519, or ECDSA P-256 SHA-256 as raw r‖s.
func (s signer) rawSign(t testing.TB, input []byte) []byte {
	t.Helper()
	if s.ed != nil {
		return ed25519.Sign(s.ed, input)
	}
	digest := sha256.Sum256(input)
	r, ss, err := ecdsa.Sign(rand.Reader, s.ec, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return sig
}

// signRaw builds a compact JWS over the given header and payload bytes.
func (s signer) signRaw(t testing.TB, header, payload string) string {
	t.Helper()
	input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(payload))
	return input + "." + b64.EncodeToString(s.rawSign(t, []byte(input)))
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// keySet is an in-memory verify.KeySet.
type keySet struct {
	mu      sync.Mutex
	keys    map[string]verify.Key
	revoked map[string]bool
	asked   []string // kids looked up, in order
}

func newKeySet(signers ...signer) *keySet {
	ks := &keySet{keys: map[string]verify.Key{}, revoked: map[string]bool{}}
	for _, s := range signers {
		ks.keys[s.kid] = s.key()
	}
	return ks
}

func (ks *keySet) LookupKey(_ context.Context, kid string) (verify.Key, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if len(ks.asked) < 1000 {
		ks.asked = append(ks.asked, kid)
	}
	if ks.revoked[kid] {
		return verify.Key{}, verify.ErrRevokedKey
	}
	k, ok := ks.keys[kid]
	if !ok {
		return verify.Key{}, fmt.Errorf("kid %q: %w", kid, verify.ErrUnknownKey)
	}
	return k, nil
}

func (ks *keySet) revoke(kid string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.revoked[kid] = true
}

// receiptStore is an in-memory verify.ReceiptLookup.
type receiptStore struct {
	mu sync.Mutex
	m  map[string]verify.ReceiptRecord
}

func newReceiptStore() *receiptStore { return &receiptStore{m: map[string]verify.ReceiptRecord{}} }

func (rs *receiptStore) Receipt(_ context.Context, jti string) (verify.ReceiptRecord, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r, ok := rs.m[jti]
	if !ok {
		return verify.ReceiptRecord{}, fmt.Errorf("jti %q: %w", jti, verify.ErrNoReceipt)
	}
	return r, nil
}

func (rs *receiptStore) put(r verify.ReceiptRecord) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.m[r.JTI] = r
}

func (rs *receiptStore) revoke(jti string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.m[jti]
	r.Revoked = true
	rs.m[jti] = r
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a verifier over an in-memory key set and receipt store, with
// an Ed25519 and an ES256 signing key.
type fixture struct {
	ed, ec   signer
	keys     *keySet
	receipts *receiptStore
	clock    *clock
	v        *verify.Verifier
}

func newFixture(t testing.TB, edit ...func(*verify.Config)) *fixture {
	t.Helper()
	f := &fixture{ed: newEdSigner(t, 1), ec: newECSigner(t), receipts: newReceiptStore(), clock: &clock{t: t0}}
	f.keys = newKeySet(f.ed, f.ec)
	cfg := verify.Config{
		Issuer:   testIssuer,
		Audience: testAudience,
		Keys:     f.keys,
		Receipts: verify.LocalReceipts(f.receipts),
		Now:      f.clock.Now,
	}
	for _, e := range edit {
		e(&cfg)
	}
	v, err := verify.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.v = v
	return f
}

func newJTI(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b64.EncodeToString(b)
}

// header returns the header custos puts on tokens s signs.
func header(s signer) map[string]any {
	return map[string]any{"alg": s.alg, "typ": "at+jwt", "kid": s.kid}
}

// claims returns a valid claims set issued at the clock's now.
func (f *fixture) claims(t testing.TB) map[string]any {
	now := f.clock.Now()
	return map[string]any{
		"iss":       testIssuer,
		"sub":       "acct-1",
		"aud":       testAudience,
		"exp":       now.Add(10 * time.Minute).Unix(),
		"iat":       now.Unix(),
		"jti":       newJTI(t),
		"client_id": "shop-web",
		"scope":     "orders:read profile",
		"sid":       "sess-1",
	}
}

// record stores the receipt custos would have stored for a token with
// claims c signed by s.
func (f *fixture) record(s signer, c map[string]any) {
	num := func(v any) time.Time {
		if n, ok := v.(int64); ok {
			return time.Unix(n, 0)
		}
		return time.Time{}
	}
	str := func(v any) string { s, _ := v.(string); return s }
	f.receipts.put(verify.ReceiptRecord{
		JTI: str(c["jti"]), Kind: verify.ReceiptKindAccess, Subject: str(c["sub"]), ClientID: str(c["client_id"]),
		KeyID: s.kid, IssuedAt: num(c["iat"]), ExpiresAt: num(c["exp"]),
	})
}

// issue mints a token as custos would, after applying edits to its header
// and claims, and records its receipt.
func (f *fixture) issue(t testing.TB, s signer, edit func(h, c map[string]any)) string {
	t.Helper()
	h, c := header(s), f.claims(t)
	if edit != nil {
		edit(h, c)
	}
	f.record(s, c)
	return s.signRaw(t, mustJSON(t, h), mustJSON(t, c))
}

// forge mints a token like issue but records no receipt.
func (f *fixture) forge(t testing.TB, s signer, edit func(h, c map[string]any)) string {
	t.Helper()
	h, c := header(s), f.claims(t)
	if edit != nil {
		edit(h, c)
	}
	return s.signRaw(t, mustJSON(t, h), mustJSON(t, c))
}

func wantReason(t testing.TB, err error, want verify.Reason) {
	t.Helper()
	if got := verify.ReasonOf(err); got != want {
		t.Fatalf("reason = %q, want %q (err: %v)", got, want, err)
	}
}
