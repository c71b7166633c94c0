package verify_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/custos-dev/custos/verify"
)

// countingReceipts accepts every token but those in refuse, counting calls.
type countingReceipts struct {
	calls  int
	refuse map[string]error
}

func (c *countingReceipts) CheckReceipt(_ context.Context, cl *verify.Claims) error {
	c.calls++
	return c.refuse[cl.JTI]
}

type epochSource struct {
	epoch uint64
	reads int
	err   error
}

func (e *epochSource) RevocationEpoch(context.Context) (uint64, error) {
	e.reads++
	return e.epoch, e.err
}

func TestCachedReceipts(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	inner, src := &countingReceipts{refuse: map[string]error{}}, &epochSource{epoch: 7}
	rc := verify.CachedReceipts(inner, src, verify.ReceiptCacheConfig{EpochInterval: 5 * time.Millisecond, Now: clock})
	ctx := t.Context()
	tok := &verify.Claims{JTI: "j1", Subject: "acc_1", ClientID: "shop", KeyID: "k", IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
	check := func(c *verify.Claims) error {
		t.Helper()
		return rc.CheckReceipt(ctx, c)
	}

	if err := check(tok); err != nil || inner.calls != 1 {
		t.Fatalf("first check: %v, %d lookups", err, inner.calls)
	}
	for range 100 {
		if err := check(tok); err != nil {
			t.Fatal(err)
		}
	}
	if inner.calls != 1 || src.reads != 1 {
		t.Fatalf("100 more checks within the interval: %d lookups, %d epoch reads; want 1 and 1", inner.calls, src.reads)
	}
	// A token copying the jti but not the rest is looked up.
	copied := *tok
	copied.Subject = "acc_2"
	check(&copied)
	if inner.calls != 2 {
		t.Fatal("a token with an accepted jti and another subject was not looked up")
	}

	// The epoch is read again after the interval; unchanged, the cache holds.
	now = now.Add(5 * time.Millisecond)
	check(tok)
	if src.reads != 2 || inner.calls != 2 {
		t.Fatalf("after the interval: %d epoch reads, %d lookups", src.reads, inner.calls)
	}
	// A revocation anywhere moves the epoch: the token is looked up again,
	// and its refusal is not remembered.
	src.epoch++
	inner.refuse["j1"] = verify.ErrTokenRevoked
	now = now.Add(5 * time.Millisecond)
	if err := check(tok); !errors.Is(err, verify.ErrTokenRevoked) {
		t.Fatalf("after a revocation: %v, want ErrTokenRevoked", err)
	}
	if err := check(tok); !errors.Is(err, verify.ErrTokenRevoked) || inner.calls != 4 {
		t.Fatalf("a refusal was remembered: %v, %d lookups", err, inner.calls)
	}

	// Without the epoch, nothing is accepted.
	src.err = errors.New("database gone")
	now = now.Add(time.Second)
	delete(inner.refuse, "j1")
	if err := check(tok); err == nil {
		t.Fatal("accepted without reading the epoch")
	}
	// An entry outlives neither its token nor a clock that went back.
	src.err = nil
	check(tok)
	calls := inner.calls
	now = tok.ExpiresAt
	check(tok)
	if inner.calls != calls+1 {
		t.Fatal("an expired token's receipt was taken from the cache")
	}
}

// counted counts the lookups of an inner ReceiptChecker.
type counted struct {
	verify.ReceiptChecker
	calls int
}

func (c *counted) CheckReceipt(ctx context.Context, cl *verify.Claims) error {
	c.calls++
	return c.ReceiptChecker.CheckReceipt(ctx, cl)
}

// Through a Verifier, a cached receipt makes the token's re-check a cache
// hit, and a revocation ends it.
func TestVerifierWithCachedReceipts(t *testing.T) {
	f := newFixture(t)
	inner := &counted{ReceiptChecker: verify.LocalReceipts(f.receipts)}
	src := &epochSource{}
	v, err := verify.New(verify.Config{Issuer: testIssuer, Audience: testAudience, Keys: f.keys, Now: f.clock.Now,
		Receipts: verify.CachedReceipts(inner, src, verify.ReceiptCacheConfig{EpochInterval: time.Millisecond, Now: f.clock.Now})})
	if err != nil {
		t.Fatal(err)
	}
	var jti string
	tok := f.issue(t, f.ed, func(_, c map[string]any) { jti = c["jti"].(string) })
	for range 10 {
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if inner.calls != 1 {
		t.Fatalf("%d receipt lookups for 10 verifications, want 1", inner.calls)
	}
	if _, err := v.Verify(t.Context(), f.forge(t, f.ed, nil)); verify.ReasonOf(err) != verify.ReasonForged {
		t.Fatalf("forged token: %v", err)
	}
	f.receipts.revoke(jti)
	src.epoch++
	f.clock.advance(time.Millisecond)
	if _, err := v.Verify(t.Context(), tok); verify.ReasonOf(err) != verify.ReasonRevoked {
		t.Fatalf("after revocation: %v", err)
	}
}

// tokenOnly is a checker that needs the token, as an Introspector does.
type tokenOnly struct{ calls int }

func (*tokenOnly) CheckReceipt(context.Context, *verify.Claims) error {
	return errors.New("needs the token")
}

func (t *tokenOnly) CheckTokenReceipt(_ context.Context, token string, _ *verify.Claims) error {
	t.calls++
	if token == "" {
		return errors.New("no token")
	}
	return nil
}

// A checker that needs the token is cached too.
func TestCachedTokenReceipts(t *testing.T) {
	inner := &tokenOnly{}
	rc := verify.CachedReceipts(inner, &epochSource{}, verify.ReceiptCacheConfig{})
	trc, ok := rc.(verify.TokenReceiptChecker)
	if !ok {
		t.Fatal("the cache hides its inner checker's CheckTokenReceipt")
	}
	cl := &verify.Claims{JTI: "j", ExpiresAt: time.Now().Add(time.Hour)}
	for range 3 {
		if err := trc.CheckTokenReceipt(t.Context(), "tok", cl); err != nil {
			t.Fatal(err)
		}
	}
	if inner.calls != 1 {
		t.Fatalf("%d introspections for 3 checks, want 1", inner.calls)
	}
}
