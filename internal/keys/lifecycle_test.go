package keys_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/keys"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/verify"
)

func TestFirstStart(t *testing.T) {
	f := newFixture(t, nil)
	active := f.one(t, store.KeyActive)
	pending := f.one(t, store.KeyPending)
	if !active.ActivatedAt.Equal(f.clk.Now()) || active.Custodian != "system" || active.Algorithm != "EdDSA" || active.Imported {
		t.Fatalf("first key %+v", active)
	}
	if want := f.clk.Now().Add(f.cfg.PublishLead); !pending.ActivateAt.Equal(want) {
		t.Fatalf("pending ActivateAt %v, want %v", pending.ActivateAt, want)
	}
	if got := f.jwksKids(t); !slices.Equal(got, []string{active.ID, pending.ID}) {
		t.Fatalf("JWKS kids %q, want active and pending", got)
	}
	sk, err := f.c.Signer(t.Context())
	if err != nil || sk.ID != active.ID {
		t.Fatalf("Signer = %v, %v; want %s", sk, err, active.ID)
	}
	if got := f.ev.types(); !slices.Equal(got, []string{"key_created", "key_activated", "key_created"}) {
		t.Fatalf("events %q", got)
	}
	// A restart changes nothing.
	c2, err := keys.Open(t.Context(), f.st, f.sealer, f.ev, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sk2, _ := c2.Signer(t.Context()); sk2.ID != active.ID || len(f.ev.types()) != 3 {
		t.Fatalf("restart: signer %v, events %q", sk2, f.ev.types())
	}
}

func TestPendingPublishedBeforeSigning(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	old := f.one(t, store.KeyActive)
	pending := f.one(t, store.KeyPending)
	if !slices.Contains(f.jwksKids(t), pending.ID) {
		t.Fatal("pending key not in JWKS")
	}
	if _, err := f.c.LookupKey(ctx, pending.ID); err != nil {
		t.Fatalf("LookupKey(pending) = %v", err)
	}
	f.clk.Advance(f.cfg.PublishLead - time.Second)
	err := f.c.Rotate(ctx, "op:alice", "test")
	nr, ok := errors.AsType[*keys.NotReadyError](err)
	if !ok || !errors.Is(err, keys.ErrNotPublishedLongEnough) || nr.KeyID != pending.ID {
		t.Fatalf("early Rotate = %v, want NotReadyError for %s", err, pending.ID)
	}
	if sk, _ := f.c.Signer(ctx); sk.ID != old.ID {
		t.Fatal("refused rotation changed the signer")
	}
	now := f.clk.Advance(time.Second)
	if err := f.c.Rotate(ctx, "op:alice", "test"); err != nil {
		t.Fatal(err)
	}
	sk, err := f.c.Signer(ctx)
	if err != nil || sk.ID != pending.ID {
		t.Fatalf("after Rotate signer %v, %v; want %s", sk, err, pending.ID)
	}
	act := f.one(t, store.KeyActive)
	if act.ActivatedAt.Sub(act.CreatedAt) < f.cfg.PublishLead {
		t.Fatalf("key signed after being published %v", act.ActivatedAt.Sub(act.CreatedAt))
	}
	ret := f.one(t, store.KeyRetired)
	if ret.ID != old.ID || !ret.PublishUntil.Equal(now.Add(f.cfg.MaxTokenLifetime+f.cfg.Leeway)) {
		t.Fatalf("retired %+v", ret)
	}
	newPending := f.one(t, store.KeyPending)
	if newPending.ID == pending.ID || newPending.ID == old.ID {
		t.Fatal("new pending key reuses a kid")
	}
	for _, ev := range f.ev.all[3:] {
		if ev.Actor != "op:alice" || ev.Class != "key" {
			t.Fatalf("event %+v: want actor op:alice, class key", ev)
		}
	}
}

func TestRetiredStaysPublishedUntilItsTokensExpire(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	old := f.one(t, store.KeyActive)
	f.clk.Advance(f.cfg.PublishLead)
	if err := f.c.Rotate(ctx, "", "test"); err != nil {
		t.Fatal(err)
	}
	until := f.one(t, store.KeyRetired).PublishUntil
	f.clk.Advance(until.Sub(f.clk.Now()) - time.Nanosecond)
	if !slices.Contains(f.jwksKids(t), old.ID) {
		t.Fatal("retired key left JWKS before PublishUntil")
	}
	if k, err := f.c.LookupKey(ctx, old.ID); err != nil || k.ID != old.ID || k.Algorithm != "EdDSA" {
		t.Fatalf("LookupKey(retired) = %+v, %v", k, err)
	}
	if sk, err := f.c.Signer(ctx); err != nil || sk.ID == old.ID {
		t.Fatal("retired key still signs")
	}
	f.clk.Advance(time.Nanosecond)
	if slices.Contains(f.jwksKids(t), old.ID) {
		t.Fatal("retired key still in JWKS at PublishUntil")
	}
	if _, err := f.c.LookupKey(ctx, old.ID); !errors.Is(err, verify.ErrRevokedKey) {
		t.Fatalf("LookupKey(retired, unpublished) = %v, want ErrRevokedKey", err)
	}
	for range 2 {
		if err := f.c.Tick(ctx, f.clk.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.ev.count("key_unpublished"); n != 1 {
		t.Fatalf("%d key_unpublished events, want 1", n)
	}
	info := f.one(t, store.KeyRetired)
	if info.Published || !strings.HasPrefix(info.Note, "unpublished: ") {
		t.Fatalf("unpublished key %+v", info)
	}
	// Its private key is destroyed: it can never sign again, and no later
	// copy of the store holds it. Custody still opens over the store.
	recs, err := f.st.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.ID == old.ID && len(r.Sealed) != 0 {
			t.Fatal("an unpublished key's sealed private key is still stored")
		}
		if r.ID != old.ID && len(r.Sealed) == 0 {
			t.Fatalf("key %s (%s) lost its private key", r.ID, r.State)
		}
	}
	if e := f.ev.last("key_unpublished"); e.Fields["private_key"] != "destroyed" {
		t.Fatalf("key_unpublished event %+v does not record the destruction", e)
	}
	if _, err := keys.Open(ctx, f.st, f.sealer, f.ev, f.cfg); err != nil {
		t.Fatalf("custody does not open after a key was destroyed: %v", err)
	}
	if err := f.c.Revoke(ctx, old.ID, "op:alice", "audit"); err != nil {
		t.Fatalf("revoking the unpublished key: %v", err)
	}
}

func TestRevokeActive(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	old, _ := f.c.Signer(ctx)
	pending := f.one(t, store.KeyPending)
	f.clk.Advance(10 * time.Second) // successor published for less than PublishLead
	if err := f.c.Revoke(ctx, old.ID, "op:bob", "laptop stolen"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.LookupKey(ctx, old.ID); !errors.Is(err, verify.ErrRevokedKey) {
		t.Fatalf("LookupKey(revoked) = %v, want ErrRevokedKey", err)
	}
	if slices.Contains(f.jwksKids(t), old.ID) {
		t.Fatal("revoked key still in JWKS")
	}
	sk, err := f.c.Signer(ctx)
	if err != nil || sk.ID != pending.ID {
		t.Fatalf("Signer after revoke = %v, %v; want the former pending %s", sk, err, pending.ID)
	}
	if _, err := sk.SignJWS([]byte("x.y")); err != nil {
		t.Fatal(err)
	}
	if _, err := old.SignJWS([]byte("x.y")); !errors.Is(err, keys.ErrKeyRevoked) {
		t.Fatalf("signing with a revoked SigningKey: %v, want ErrKeyRevoked", err)
	}
	if f.one(t, store.KeyPending).ID == pending.ID {
		t.Fatal("no new pending key")
	}
	rev := f.one(t, store.KeyRevoked)
	if rev.Published || !rev.RevokedAt.Equal(f.clk.Now()) || !strings.Contains(rev.Note, "laptop stolen") {
		t.Fatalf("revoked %+v", rev)
	}
	var sawEmergency bool
	for _, ev := range f.ev.all {
		if ev.Type == "key_activated" && ev.Fields["emergency"] == true && ev.Fields["kid"] == pending.ID {
			sawEmergency = true
		}
	}
	if !sawEmergency {
		t.Fatal("no emergency key_activated event")
	}
	// Idempotent; unknown kid; a restart keeps it revoked.
	if err := f.c.Revoke(ctx, old.ID, "op:bob", "again"); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Revoke(ctx, "nope", "op:bob", ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Revoke(unknown) = %v", err)
	}
	c2, err := keys.Open(ctx, f.st, f.sealer, f.ev, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.LookupKey(ctx, old.ID); !errors.Is(err, verify.ErrRevokedKey) {
		t.Fatalf("after restart LookupKey(revoked) = %v", err)
	}
}

func TestRevokePendingAndRetired(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	active := f.one(t, store.KeyActive)
	p := f.one(t, store.KeyPending)
	if err := f.c.Revoke(ctx, p.ID, "op:bob", "test"); err != nil {
		t.Fatal(err)
	}
	if np := f.one(t, store.KeyPending); np.ID == p.ID {
		t.Fatal("no new pending key")
	}
	if sk, _ := f.c.Signer(ctx); sk.ID != active.ID {
		t.Fatal("revoking the pending key changed the signer")
	}
	f.clk.Advance(f.cfg.PublishLead)
	if err := f.c.Rotate(ctx, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Revoke(ctx, active.ID, "op:bob", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.LookupKey(ctx, active.ID); !errors.Is(err, verify.ErrRevokedKey) {
		t.Fatalf("LookupKey(revoked retired) = %v", err)
	}
	if len(f.byState(t, store.KeyActive)) != 1 || len(f.byState(t, store.KeyPending)) != 1 {
		t.Fatal("revoking a retired key disturbed active or pending")
	}
}

func TestLookupUnknown(t *testing.T) {
	f := newFixture(t, nil)
	long := strings.Repeat("A", 64<<10)
	_, err := f.c.LookupKey(t.Context(), long)
	if !errors.Is(err, verify.ErrUnknownKey) || len(err.Error()) > 200 {
		t.Fatalf("LookupKey(64 KB kid) = %.300v", err)
	}
}

func TestKidsNeverRepeat(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	var signers []string
	for range 50 {
		f.clk.Advance(f.cfg.ActivePeriod)
		if err := f.c.Tick(ctx, f.clk.Now()); err != nil {
			t.Fatal(err)
		}
		sk, err := f.c.Signer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, sk.ID)
	}
	list, _ := f.c.List(ctx)
	seen := map[string]bool{}
	for _, k := range list {
		if seen[k.ID] {
			t.Fatalf("kid %s reused", k.ID)
		}
		seen[k.ID] = true
	}
	if len(list) != 52 || len(slices.Compact(signers)) != 50 {
		t.Fatalf("%d keys, %d distinct signers after 50 rotations", len(list), len(slices.Compact(signers)))
	}
	// Keys retired long ago are gone from the JWKS; the one retired just
	// now stays until its tokens expire.
	if n := len(f.jwksKids(t)); n != 3 {
		t.Fatalf("JWKS has %d keys, want active, pending and the last retired", n)
	}
}

func TestMaxAge(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	first := f.one(t, store.KeyActive)
	// Just before ActivePeriod, the pending key is replaced, so at
	// ActivePeriod its successor is too young and the normal rotation waits.
	f.clk.Advance(f.cfg.ActivePeriod - time.Second)
	if err := f.c.Revoke(ctx, f.one(t, store.KeyPending).ID, "", "test"); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Second)
	if err := f.c.Tick(ctx, f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	if f.one(t, store.KeyActive).ID != first.ID {
		t.Fatal("rotated to a successor published less than PublishLead")
	}
	// Ticks are missed; the next comes far past MaxAge: rotation at once.
	f.clk.Advance(f.cfg.MaxAge)
	if err := f.c.Tick(ctx, f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	if f.one(t, store.KeyActive).ID == first.ID {
		t.Fatal("key past MaxAge still active")
	}

	// Without any Tick, Signer itself refuses to sign with an over-age key.
	g := newFixture(t, func(c *keys.Config) { c.Algorithm = "ES256" })
	old, _ := g.c.Signer(ctx)
	g.clk.Advance(g.cfg.MaxAge)
	sk, err := g.c.Signer(ctx)
	if err != nil || sk.ID == old.ID || sk.Algorithm != "ES256" {
		t.Fatalf("Signer past MaxAge = %v, %v", sk, err)
	}
}

func TestMaxAgeWithoutSuccessor(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	first := f.one(t, store.KeyActive)
	// Remove the successor behind custody's back (as if another node
	// revoked it), then let MaxAge pass.
	f.st.set(t, f.one(t, store.KeyPending).ID, func(k *store.Key) { k.State = store.KeyRevoked })
	f.clk.Advance(f.cfg.MaxAge)
	if err := f.c.Tick(ctx, f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	if a := f.one(t, store.KeyActive); a.ID == first.ID {
		t.Fatal("key past MaxAge still active")
	}
	f.one(t, store.KeyPending)
}

func TestConcurrentNodes(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	b, err := keys.Open(ctx, f.st, f.sealer, f.ev, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(f.cfg.PublishLead)
	// Node B rotates between node A's read and its first write.
	f.st.beforeUpdate = func() {
		if err := b.Rotate(ctx, "", "node B"); err != nil {
			t.Errorf("node B: %v", err)
		}
	}
	if err := f.c.Rotate(ctx, "", "node A"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("racing Rotate = %v, want ErrConflict", err)
	}
	for _, c := range []*keys.Custody{f.c, b} {
		if err := c.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	act := f.one(t, store.KeyActive)
	f.one(t, store.KeyPending)
	f.one(t, store.KeyRetired)
	for _, c := range []*keys.Custody{f.c, b} {
		if sk, _ := c.Signer(ctx); sk.ID != act.ID {
			t.Fatalf("node signs with %s, want %s", sk.ID, act.ID)
		}
	}
}

func TestRepairTwoActive(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	first := f.one(t, store.KeyActive)
	p := f.one(t, store.KeyPending)
	// A crash between activating the successor and retiring the old key.
	f.clk.Advance(time.Minute)
	f.st.set(t, p.ID, func(k *store.Key) { k.State, k.ActivatedAt = store.KeyActive, f.clk.Now() })
	if err := f.c.Tick(ctx, f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	if a := f.one(t, store.KeyActive); a.ID != p.ID {
		t.Fatalf("active %s, want the newer %s", a.ID, p.ID)
	}
	if r := f.one(t, store.KeyRetired); r.ID != first.ID {
		t.Fatal("older active key not retired")
	}
	f.one(t, store.KeyPending)
}

func pemOf(t *testing.T, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestImport(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
	ecSEC1, _ := x509.MarshalECPrivateKey(ecKey)
	for _, tt := range []struct {
		name, alg string
		pem       []byte
		pub       any
	}{
		{"Ed25519 PKCS#8", "EdDSA", pemOf(t, "PRIVATE KEY", edDER), edKey.Public()},
		{"P-256 SEC 1", "ES256", pemOf(t, "EC PRIVATE KEY", ecSEC1), ecKey.Public()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			ctx := t.Context()
			prev := f.one(t, store.KeyActive)
			pend := f.one(t, store.KeyPending)
			f.clk.Advance(time.Minute)
			info, err := f.c.Import(ctx, tt.pem, "op:carol")
			if err != nil {
				t.Fatal(err)
			}
			tp, _ := (&jose.JSONWebKey{Key: tt.pub}).Thumbprint(crypto.SHA256)
			if info.ID != base64.RawURLEncoding.EncodeToString(tp) || info.Algorithm != tt.alg || !info.Imported ||
				info.State != store.KeyActive || info.Custodian != "op:carol" {
				t.Fatalf("imported %+v", info)
			}
			if sk, _ := f.c.Signer(ctx); sk.ID != info.ID {
				t.Fatal("imported key does not sign")
			}
			if r := f.one(t, store.KeyRetired); r.ID != prev.ID {
				t.Fatal("previous active key not retired")
			}
			if f.one(t, store.KeyPending).ID != pend.ID {
				t.Fatal("import replaced the pending key")
			}
			if _, err := f.c.Import(ctx, tt.pem, "op:carol"); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("second Import = %v, want ErrConflict", err)
			}
			if f.ev.count("key_imported") != 1 {
				t.Fatal("no single key_imported event")
			}
			// Retired by the first Tick ActivePeriod after the import.
			f.clk.Advance(f.cfg.ActivePeriod - time.Second)
			f.c.Tick(ctx, f.clk.Now())
			if f.one(t, store.KeyActive).ID != info.ID {
				t.Fatal("imported key retired early")
			}
			f.clk.Advance(time.Second)
			if err := f.c.Tick(ctx, f.clk.Now()); err != nil {
				t.Fatal(err)
			}
			list, _ := f.c.List(ctx)
			for _, k := range list {
				if k.ID == info.ID && (k.State != store.KeyRetired || !k.Imported) {
					t.Fatalf("imported key after rotation: %+v", k)
				}
			}
			// Never re-promoted, even once revoked and offered again.
			if err := f.c.Revoke(ctx, info.ID, "op:carol", "done"); err != nil {
				t.Fatal(err)
			}
			if _, err := f.c.Import(ctx, tt.pem, "op:carol"); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("Import of a revoked key = %v, want ErrConflict", err)
			}
		})
	}
}

func TestImportRefuses(t *testing.T) {
	f := newFixture(t, nil)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	pubDER, _ := x509.MarshalPKIXPublicKey(edKey.Public())
	good := pemOf(t, "PRIVATE KEY", edDER)
	for _, tt := range []struct {
		name string
		pem  []byte
	}{
		{"empty", nil},
		{"not PEM", []byte("hello")},
		{"P-384", pemOf(t, "PRIVATE KEY", p384DER)},
		{"RSA", pemOf(t, "PRIVATE KEY", rsaDER)},
		{"public key", pemOf(t, "PUBLIC KEY", pubDER)},
		{"two keys", append(clone(good), good...)},
		{"trailing garbage", append(clone(good), "junk"...)},
		{"wrong type label", pemOf(t, "EC PRIVATE KEY", edDER)},
		{"encrypted", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: edDER})},
		{"corrupt DER", pemOf(t, "PRIVATE KEY", edDER[:20])},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.c.Import(t.Context(), tt.pem, "op:carol")
			if !errors.Is(err, keys.ErrUnsupportedKey) {
				t.Fatalf("Import = %v, want ErrUnsupportedKey", err)
			}
		})
	}
	if n := len(f.byState(t, store.KeyActive)); n != 1 || f.ev.count("key_imported") != 0 {
		t.Fatal("a refused import changed something")
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func TestSignJWSVerifies(t *testing.T) {
	for _, alg := range []string{"EdDSA", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			f := newFixture(t, func(c *keys.Config) { c.Algorithm = alg })
			ctx := t.Context()
			sk, err := f.c.Signer(ctx)
			if err != nil || sk.Algorithm != alg {
				t.Fatalf("Signer = %v, %v", sk, err)
			}
			if _, ok := sk.Signer.(ed25519.PrivateKey); ok {
				t.Fatal("Signer is the private key itself")
			}
			if _, ok := sk.Signer.(*ecdsa.PrivateKey); ok {
				t.Fatal("Signer is the private key itself")
			}
			vk, err := f.c.LookupKey(ctx, sk.ID)
			if err != nil || vk.Algorithm != alg {
				t.Fatalf("LookupKey = %+v, %v", vk, err)
			}
			b64 := base64.RawURLEncoding.EncodeToString
			input := b64([]byte(`{"alg":"`+alg+`","kid":"`+sk.ID+`","typ":"at+jwt"}`)) + "." + b64([]byte(`{"sub":"s1"}`))
			sig, err := sk.SignJWS([]byte(input))
			if err != nil {
				t.Fatal(err)
			}
			switch pub := vk.Public.(type) {
			case ed25519.PublicKey:
				if !ed25519.Verify(pub, []byte(input), sig) {
					t.Fatal("Ed25519 signature does not verify")
				}
			case *ecdsa.PublicKey:
				if len(sig) != 64 {
					t.Fatalf("ES256 signature is %d bytes, want raw r‖s of 64", len(sig))
				}
				d := sha256.Sum256([]byte(input))
				r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
				if !ecdsa.Verify(pub, d[:], r, s) {
					t.Fatal("ES256 signature does not verify")
				}
			default:
				t.Fatalf("public key %T", pub)
			}
			// An independent JOSE implementation agrees, using the JWKS.
			set, _ := f.c.JWKS(ctx)
			jws, err := jose.ParseSignedCompact(input+"."+b64(sig), []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			jwk := set.Key(sk.ID)
			if len(jwk) != 1 || jwk[0].Use != "sig" || jwk[0].Algorithm != alg {
				t.Fatalf("JWKS entry %+v", jwk)
			}
			if _, err := jws.Verify(jwk[0]); err != nil {
				t.Fatalf("go-jose: %v", err)
			}
			// A wrong signing input does not verify.
			if _, err := jose.ParseSignedCompact(input+"x."+b64(sig), []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)}); err == nil {
				if j, _ := jose.ParseSignedCompact(input+"x."+b64(sig), []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)}); j != nil {
					if _, err := j.Verify(jwk[0]); err == nil {
						t.Fatal("altered token verifies")
					}
				}
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tt := range []struct {
		name  string
		mod   func(*keys.Config)
		field string
	}{
		{"algorithm", func(c *keys.Config) { c.Algorithm = "HS256" }, "Algorithm"},
		{"lead below max-age", func(c *keys.Config) { c.PublishLead = c.JWKSMaxAge - 1 }, "PublishLead"},
		{"lead above period", func(c *keys.Config) { c.PublishLead = c.ActivePeriod + 1 }, "PublishLead"},
		{"max age below period", func(c *keys.Config) { c.MaxAge = c.ActivePeriod - 1 }, "MaxAge"},
		{"negative period", func(c *keys.Config) { c.ActivePeriod = -1 }, "ActivePeriod"},
		{"negative leeway", func(c *keys.Config) { c.Leeway = -1 }, "Leeway"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(newClock())
			tt.mod(&cfg)
			_, err := keys.Open(t.Context(), &memStore{}, mustSealer(t), &events{}, cfg)
			ce, ok := errors.AsType[*keys.ConfigError](err)
			if !ok || ce.Field != tt.field || !errors.Is(err, keys.ErrInvalidConfig) {
				t.Fatalf("Open = %v, want ConfigError on %s", err, tt.field)
			}
		})
	}
	// The zero Config is valid: all defaults.
	c, err := keys.Open(t.Context(), &memStore{}, mustSealer(t), &events{}, keys.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if c.JWKSMaxAge() != keys.DefaultJWKSMaxAge {
		t.Fatalf("JWKSMaxAge %v", c.JWKSMaxAge())
	}
}

func mustSealer(t *testing.T) keys.Sealer {
	s, err := keys.OpenFileSealer(t.TempDir()+"/root.key", true)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWrongRootKeyAndTamperedRows(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	other := mustSealer(t)
	_, err := keys.Open(ctx, f.st, other, f.ev, f.cfg)
	mm, ok := errors.AsType[*keys.RootKeyMismatchError](err)
	if !ok || !errors.Is(err, keys.ErrWrongRootKey) || mm.SealedBy != f.sealer.Name() || mm.Have != other.Name() {
		t.Fatalf("Open with another root key = %v", err)
	}
	if want := "was sealed by root key " + f.sealer.Name() + "; this custos has root key " + other.Name(); !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q lacks %q", err, want)
	}

	a, p := f.one(t, store.KeyActive), f.one(t, store.KeyPending)
	list, _ := f.st.Keys(ctx)
	sealedA, sealedP := list[0].Sealed, list[1].Sealed
	for _, tt := range []struct {
		name string
		mod  func()
	}{
		{"swapped blobs", func() {
			f.st.set(t, a.ID, func(k *store.Key) { k.Sealed = sealedP })
			f.st.set(t, p.ID, func(k *store.Key) { k.Sealed = sealedA })
		}},
		{"flipped bit", func() { f.st.set(t, p.ID, func(k *store.Key) { k.Sealed = flip(sealedP, len(sealedP)-1) }) }},
		{"relabelled algorithm", func() { f.st.set(t, a.ID, func(k *store.Key) { k.Algorithm = "ES256" }) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.mod()
			defer func() {
				f.st.set(t, a.ID, func(k *store.Key) { k.Sealed, k.Algorithm = sealedA, "EdDSA" })
				f.st.set(t, p.ID, func(k *store.Key) { k.Sealed = sealedP })
			}()
			if _, err := keys.Open(ctx, f.st, f.sealer, f.ev, f.cfg); err == nil {
				t.Fatal("Open accepted a tampered key row")
			}
		})
	}
	if _, err := keys.Open(ctx, f.st, f.sealer, f.ev, f.cfg); err != nil {
		t.Fatalf("restored rows: %v", err)
	}
}

// FuzzImportPEM: the import parser never panics and accepts only Ed25519
// and P-256 keys.
func FuzzImportPEM(f *testing.F) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(edKey)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		alg, err := keys.ParseImportPEM(b)
		if err == nil && alg != "EdDSA" && alg != "ES256" {
			t.Fatalf("accepted a %q key", alg)
		}
		if err != nil && !errors.Is(err, keys.ErrUnsupportedKey) {
			t.Fatalf("error %v does not wrap ErrUnsupportedKey", err)
		}
	})
}

func TestOldSigningKeyAfterRotation(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	old, _ := f.c.Signer(ctx)
	f.clk.Advance(f.cfg.PublishLead)
	if err := f.c.Rotate(ctx, "", ""); err != nil {
		t.Fatal(err)
	}
	// In-flight issuance may finish with the old key within Leeway...
	f.clk.Advance(f.cfg.Leeway)
	if _, err := old.SignJWS([]byte("a.b")); err != nil {
		t.Fatalf("within Leeway: %v", err)
	}
	// ...and not after: its tokens would outlive its publication.
	f.clk.Advance(time.Nanosecond)
	if _, err := old.SignJWS([]byte("a.b")); !errors.Is(err, keys.ErrNoActiveKey) {
		t.Fatalf("after Leeway: %v, want ErrNoActiveKey", err)
	}
}

func TestRevokeActiveWithoutSuccessor(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	a := f.one(t, store.KeyActive)
	f.st.set(t, f.one(t, store.KeyPending).ID, func(k *store.Key) { k.State = store.KeyRevoked })
	if err := f.c.Revoke(ctx, a.ID, "op:bob", "test"); err != nil {
		t.Fatal(err)
	}
	sk, err := f.c.Signer(ctx)
	if err != nil || sk.ID == a.ID {
		t.Fatalf("Signer = %v, %v", sk, err)
	}
	f.one(t, store.KeyPending)
}

func TestEmitFailureIsReported(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	sinkErr := errors.New("audit log unavailable")
	failing := event.SinkFunc(func(context.Context, event.Event) error { return sinkErr })
	c, err := keys.Open(ctx, f.st, f.sealer, failing, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := f.one(t, store.KeyActive)
	err = c.Revoke(ctx, a.ID, "op:bob", "test")
	if !errors.Is(err, sinkErr) {
		t.Fatalf("Revoke = %v, want the sink's error", err)
	}
	// The revocation itself stands: refusing the key matters more.
	if _, err := c.LookupKey(ctx, a.ID); !errors.Is(err, verify.ErrRevokedKey) {
		t.Fatalf("LookupKey = %v", err)
	}
}

func TestOffboardCustodian(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(edKey)
	f.clk.Advance(time.Minute)
	imp, err := f.c.Import(ctx, pemOf(t, "PRIVATE KEY", der), "op:dana")
	if err != nil {
		t.Fatal(err)
	}

	for _, bad := range []struct{ custodian, reason string }{
		{"", "left"},
		{keys.DefaultCustodian, "left"},
		{"op:dana", ""},
		{"op:dana", strings.Repeat("x", keys.MaxOffboardReason+1)},
		{"op:\xff", "left"},
		{"op:dana\x1b[2J", "left"},
		{"op:dana", "   "},
		{"op:dana", "left\x07"},
	} {
		if _, err := f.c.Offboard(ctx, bad.custodian, "op:lead", bad.reason, true); err == nil {
			t.Fatalf("Offboard(%q, reason of %d bytes) succeeded", bad.custodian, len(bad.reason))
		}
	}
	if f.st.gone != nil || f.ev.count(keys.EventCustodianOffboarded) != 0 || f.one(t, store.KeyActive).ID != imp.ID {
		t.Fatal("a refused offboarding changed something")
	}

	// Dana held the imported key, now active: revoking it puts a custos
	// key in its place at once.
	f.clk.Advance(time.Minute)
	out, err := f.c.Offboard(ctx, "op:dana", "op:lead", "left the company", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Held) != 1 || out.Held[0].ID != imp.ID || len(out.Revoked) != 1 || out.Revoked[0] != imp.ID {
		t.Fatalf("Offboard = %+v", out)
	}
	if a := f.one(t, store.KeyActive); a.ID == imp.ID || a.Custodian != keys.DefaultCustodian {
		t.Fatalf("active key after offboarding %+v", a)
	}
	if k := f.one(t, store.KeyRevoked); k.ID != imp.ID {
		t.Fatalf("revoked key %s, want %s", k.ID, imp.ID)
	}
	e := f.ev.last(keys.EventCustodianOffboarded)
	if e.Actor != "op:lead" || e.Fields["custodian"] != "op:dana" || e.Fields["keys"] != 1 || e.Fields["revoked"] != 1 {
		t.Fatalf("custodian_offboarded event %+v", e)
	}
	if rev := f.ev.last(keys.EventKeyRevoked); rev.Fields["kid"] != imp.ID || rev.Fields["custodian"] != "op:dana" {
		t.Fatalf("key_revoked event %+v", rev)
	}
	if len(f.st.gone) != 1 || f.st.gone[0].Custodian != "op:dana" || f.st.gone[0].Actor != "op:lead" || !f.st.gone[0].At.Equal(f.clk.Now()) {
		t.Fatalf("stored offboarding %+v", f.st.gone)
	}

	// Gone, Dana imports nothing more.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	der2, _ := x509.MarshalPKCS8PrivateKey(other)
	if _, err := f.c.Import(ctx, pemOf(t, "PRIVATE KEY", der2), "op:dana"); err == nil || !strings.Contains(err.Error(), "was offboarded") {
		t.Fatalf("import by an offboarded custodian: %v", err)
	}

	// Once is enough; and a custodian holding nothing can leave too,
	// keeping nothing to revoke.
	if _, err := f.c.Offboard(ctx, "op:dana", "op:lead", "again", true); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second Offboard = %v, want ErrConflict", err)
	}
	if out, err := f.c.Offboard(ctx, "op:erin", "op:lead", "left", false); err != nil || len(out.Held) != 0 {
		t.Fatalf("Offboard of a custodian with no keys = %+v, %v", out, err)
	}
}
