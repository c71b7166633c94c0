package verify_test

import (
	"context"
	"testing"

	"github.com/custos-dev/custos/verify"
)

// FuzzVerify: Verify never panics, refuses with a reason, and accepts
// nothing but the tokens custos issued (Ed25519 signatures are not
// malleable, so no other byte string can carry an issued token's claims).
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	issued := map[string]bool{}
	for _, edit := range []func(h, c map[string]any){
		nil,
		func(_, c map[string]any) { c["aud"] = []string{"x", testAudience} },
		func(_, c map[string]any) { delete(c, "sid"); delete(c, "scope") },
	} {
		tok := fx.issue(f, fx.ed, edit)
		issued[tok] = true
		f.Add(tok)
	}
	f.Add(fx.forge(f, fx.ed, nil))
	f.Add(fx.issue(f, fx.ed, func(h, _ map[string]any) { h["alg"] = "none" }))
	f.Add(fx.issue(f, fx.ed, func(_, c map[string]any) { c["exp"] = "soon" }))
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := fx.v.Verify(context.Background(), tok)
		if err != nil {
			if c != nil || verify.ReasonOf(err) == "" {
				t.Fatalf("refusal with claims or without a reason: %v", err)
			}
			return
		}
		if !issued[tok] {
			t.Fatalf("accepted a token custos never issued: %q", tok)
		}
	})
}

func benchmarkVerify(b *testing.B, cacheSize int, s func(f *fixture) signer) {
	f := newFixture(b, func(c *verify.Config) { c.CacheSize = cacheSize })
	tok := f.issue(b, s(f), nil)
	ctx := context.Background()
	if _, err := f.v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCached: a token already seen (key and receipt re-checked
// against in-memory stores). Target ≤ 2 µs/op.
func BenchmarkVerifyCached(b *testing.B) {
	benchmarkVerify(b, 0, func(f *fixture) signer { return f.ed })
}

// BenchmarkVerifyFirstSight: full verification of an Ed25519 token, cache
// off. Target ≤ 70 µs/op.
func BenchmarkVerifyFirstSight(b *testing.B) {
	benchmarkVerify(b, -1, func(f *fixture) signer { return f.ed })
}

// BenchmarkVerifyFirstSightES256 is the same with a P-256 key.
func BenchmarkVerifyFirstSightES256(b *testing.B) {
	benchmarkVerify(b, -1, func(f *fixture) signer { return f.ec })
}
