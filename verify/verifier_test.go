package verify_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/verify"
)

func TestNewConfig(t *testing.T) {
	ks := newKeySet()
	rc := verify.LocalReceipts(newReceiptStore())
	valid := func() verify.Config {
		return verify.Config{Issuer: testIssuer, Audience: testAudience, Keys: ks, Receipts: rc}
	}
	bad := []struct {
		name string
		edit func(c *verify.Config)
	}{
		{"no_issuer", func(c *verify.Config) { c.Issuer = "" }},
		{"relative_issuer", func(c *verify.Config) { c.Issuer = "id.custos.test" }},
		{"no_audience", func(c *verify.Config) { c.Audience = "" }},
		{"no_keys", func(c *verify.Config) { c.Keys = nil }},
		{"no_receipts", func(c *verify.Config) { c.Receipts = nil }},
		{"hs256_allowed", func(c *verify.Config) { c.Algorithms = []string{"HS256"} }},
		{"none_allowed", func(c *verify.Config) { c.Algorithms = []string{verify.AlgEdDSA, "none"} }},
		{"lowercase_alg", func(c *verify.Config) { c.Algorithms = []string{"es256"} }},
		{"lifetime_above_15m", func(c *verify.Config) { c.MaxLifetime = time.Hour }},
		{"negative_lifetime", func(c *verify.Config) { c.MaxLifetime = -time.Minute }},
		{"huge_leeway", func(c *verify.Config) { c.Leeway = 10 * time.Minute }},
		{"huge_token_size", func(c *verify.Config) { c.MaxTokenSize = 1 << 20 }},
		{"audience_and_any_audience", func(c *verify.Config) { c.AnyAudience = true }},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.edit(&cfg)
			if _, err := verify.New(cfg); !errors.Is(err, verify.ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := verify.New(valid()); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	cfg := valid()
	cfg.Receipts, cfg.AllowNoReceipts = nil, true
	if _, err := verify.New(cfg); err != nil {
		t.Fatalf("AllowNoReceipts: %v", err)
	}
}

// TestAnyAudience: the issuer's own endpoints accept every audience; a
// resource server's verifier never does.
func TestAnyAudience(t *testing.T) {
	other := func(_, c map[string]any) { c["aud"] = "https://other.test" }
	f := newFixture(t)
	_, err := f.v.Verify(context.Background(), f.issue(t, f.ed, other))
	wantReason(t, err, verify.ReasonAudience)

	anyAud := newFixture(t, func(c *verify.Config) { c.Audience, c.AnyAudience = "", true })
	if _, err := anyAud.v.Verify(context.Background(), anyAud.issue(t, anyAud.ed, other)); err != nil {
		t.Fatalf("AnyAudience refused another audience: %v", err)
	}
	// Everything else is still checked.
	_, err = anyAud.v.Verify(context.Background(), anyAud.forge(t, anyAud.ed, other))
	wantReason(t, err, verify.ReasonForged)
}

// TestAllowNoReceipts shows why receipts are the default: without them a
// token signed with a leaked key passes.
func TestAllowNoReceipts(t *testing.T) {
	f := newFixture(t, func(c *verify.Config) { c.Receipts, c.AllowNoReceipts = nil, true })
	if _, err := f.v.Verify(context.Background(), f.forge(t, f.ed, nil)); err != nil {
		t.Fatalf("forged token refused without receipts: %v", err)
	}
}

func TestAlgorithmAllowList(t *testing.T) {
	f := newFixture(t, func(c *verify.Config) { c.Algorithms = []string{verify.AlgES256} })
	_, err := f.v.Verify(context.Background(), f.issue(t, f.ed, nil))
	wantReason(t, err, verify.ReasonAlgorithm)
	if _, err := f.v.Verify(context.Background(), f.issue(t, f.ec, nil)); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyClaims(t *testing.T) {
	f := newFixture(t)
	var want map[string]any
	tok := f.issue(t, f.ed, func(_, c map[string]any) {
		c["aud"] = []string{testAudience, "https://other.test"}
		c["nbf"] = t0.Unix() - 5
		want = c
	})
	c, err := f.v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != testIssuer || c.Subject != "acct-1" || c.JTI != want["jti"] || c.ClientID != "shop-web" ||
		c.SessionID != "sess-1" || c.KeyID != f.ed.kid || c.Algorithm != verify.AlgEdDSA ||
		!c.IssuedAt.Equal(t0) || !c.ExpiresAt.Equal(t0.Add(10*time.Minute)) || !c.NotBefore.Equal(t0.Add(-5*time.Second)) ||
		!slices.Equal(c.Audience, []string{testAudience, "https://other.test"}) ||
		!slices.Equal(c.Scope, []string{"orders:read", "profile"}) {
		t.Fatalf("claims = %+v", c)
	}
	if !c.HasScope("profile") || c.HasScope("admin") {
		t.Error("HasScope")
	}
}

// TestCachedClaimsAreCopies: a caller mutating the claims it got does not
// change what the next caller gets.
func TestCachedClaimsAreCopies(t *testing.T) {
	f := newFixture(t)
	tok := f.issue(t, f.ed, nil)
	c1, err := f.v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	c1.Scope[0] = "admin"
	c1.Audience[0] = "x"
	c1.Subject = "acct-2"
	c2, err := f.v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Scope[0] != "orders:read" || c2.Audience[0] != testAudience || c2.Subject != "acct-1" {
		t.Fatalf("cached claims were shared: %+v", c2)
	}
}

func TestCacheExpiry(t *testing.T) {
	f := newFixture(t)
	tok := f.issue(t, f.ed, nil)
	if _, err := f.v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	f.clock.advance(10*time.Minute + verify.DefaultLeeway - time.Second)
	if _, err := f.v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	f.clock.advance(time.Second)
	_, err := f.v.Verify(context.Background(), tok)
	wantReason(t, err, verify.ReasonExpired)
}

// TestCacheKeyChanged: if the key set starts returning a different key for a
// cached token's kid, the token is verified afresh, not trusted from cache.
func TestCacheKeyChanged(t *testing.T) {
	f := newFixture(t)
	tok := f.issue(t, f.ed, nil)
	if _, err := f.v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	other := newEdSigner(t, 42)
	f.keys.mu.Lock()
	f.keys.keys[f.ed.kid] = verify.Key{ID: f.ed.kid, Algorithm: verify.AlgEdDSA, Public: other.publicKey()}
	f.keys.mu.Unlock()
	_, err := f.v.Verify(context.Background(), tok)
	wantReason(t, err, verify.ReasonSignature)
}

// TestUnavailableFailsClosed: key set and receipt errors other than the
// sentinels refuse the token as unavailable, cached or not.
func TestUnavailableFailsClosed(t *testing.T) {
	boom := errors.New("store down")
	f := newFixture(t, func(c *verify.Config) {
		c.Receipts = verify.LocalReceipts(lookupFunc(func(context.Context, string) (verify.ReceiptRecord, error) {
			return verify.ReceiptRecord{}, boom
		}))
	})
	_, err := f.v.Verify(context.Background(), f.issue(t, f.ed, nil))
	wantReason(t, err, verify.ReasonUnavailable)
	if !errors.Is(err, boom) {
		t.Errorf("cause lost: %v", err)
	}

	f = newFixture(t)
	tok := f.issue(t, f.ed, nil)
	if _, err := f.v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	failing := &failingKeySet{err: boom}
	v, err := verify.New(verify.Config{Issuer: testIssuer, Audience: testAudience, Keys: failing,
		Receipts: verify.LocalReceipts(f.receipts), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), tok)
	wantReason(t, err, verify.ReasonUnavailable)
}

type lookupFunc func(context.Context, string) (verify.ReceiptRecord, error)

func (f lookupFunc) Receipt(ctx context.Context, jti string) (verify.ReceiptRecord, error) {
	return f(ctx, jti)
}

type failingKeySet struct{ err error }

func (k *failingKeySet) LookupKey(context.Context, string) (verify.Key, error) {
	return verify.Key{}, k.err
}

func TestLocalReceipts(t *testing.T) {
	f := newFixture(t)
	good := verify.ReceiptRecord{JTI: "j1", Kind: "access", Subject: "acct-1", ClientID: "shop-web", KeyID: f.ed.kid,
		IssuedAt: t0, ExpiresAt: t0.Add(10 * time.Minute)}
	claims := &verify.Claims{JTI: "j1", Subject: "acct-1", ClientID: "shop-web", KeyID: f.ed.kid,
		IssuedAt: t0, ExpiresAt: t0.Add(10 * time.Minute)}
	cases := []struct {
		name string
		edit func(r *verify.ReceiptRecord)
		want error // nil, ErrNoReceipt or ErrTokenRevoked
	}{
		{"match", func(*verify.ReceiptRecord) {}, nil},
		{"match_subsecond_store_time", func(r *verify.ReceiptRecord) { r.IssuedAt = t0.Add(300 * time.Millisecond) }, nil},
		{"revoked", func(r *verify.ReceiptRecord) { r.Revoked = true }, verify.ErrTokenRevoked},
		{"kind_refresh", func(r *verify.ReceiptRecord) { r.Kind = "refresh" }, verify.ErrNoReceipt},
		{"kind_id", func(r *verify.ReceiptRecord) { r.Kind = "id" }, verify.ErrNoReceipt},
		{"other_subject", func(r *verify.ReceiptRecord) { r.Subject = "acct-2" }, verify.ErrNoReceipt},
		{"other_client", func(r *verify.ReceiptRecord) { r.ClientID = "x" }, verify.ErrNoReceipt},
		{"other_kid", func(r *verify.ReceiptRecord) { r.KeyID = f.ec.kid }, verify.ErrNoReceipt},
		{"other_iat", func(r *verify.ReceiptRecord) { r.IssuedAt = t0.Add(-time.Second) }, verify.ErrNoReceipt},
		{"other_exp", func(r *verify.ReceiptRecord) { r.ExpiresAt = t0.Add(5 * time.Minute) }, verify.ErrNoReceipt},
		{"other_jti", func(r *verify.ReceiptRecord) { r.JTI = "j2" }, verify.ErrNoReceipt},
		{"revoked_and_mismatched", func(r *verify.ReceiptRecord) { r.Revoked = true; r.Subject = "x" }, verify.ErrNoReceipt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.edit(&r)
			rc := verify.LocalReceipts(lookupFunc(func(context.Context, string) (verify.ReceiptRecord, error) { return r, nil }))
			err := rc.CheckReceipt(context.Background(), claims)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("not_found", func(t *testing.T) {
		err := verify.LocalReceipts(newReceiptStore()).CheckReceipt(context.Background(), claims)
		if !errors.Is(err, verify.ErrNoReceipt) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestErrorNeverCarriesToken(t *testing.T) {
	f := newFixture(t)
	tok := f.forge(t, f.ed, nil)
	_, err := f.v.Verify(context.Background(), tok)
	wantReason(t, err, verify.ReasonForged)
	for _, part := range strings.Split(tok, ".") {
		if strings.Contains(err.Error(), part) {
			t.Fatalf("error %q contains a token segment", err)
		}
	}
}
