package verify_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/custos-dev/custos/verify"
)

// remoteFixture is a verifier using a JWKS from an issueServer, with local
// receipts.
type remoteFixture struct {
	*fixture
	srv  *issuerServer
	jwks *verify.JWKS
}

func newRemoteFixture(t *testing.T, keys ...func(f *fixture) jose.JSONWebKey) *remoteFixture {
	t.Helper()
	f := newFixture(t)
	var jwks []jose.JSONWebKey
	for _, k := range keys {
		jwks = append(jwks, k(f))
	}
	srv := newIssuerServer(t, jwks...)
	ks, err := verify.NewRemoteKeySet(context.Background(), verify.JWKSConfig{Issuer: srv.URL, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.New(verify.Config{
		Issuer: testIssuer, Audience: testAudience, Keys: ks,
		Receipts: verify.LocalReceipts(f.receipts), Now: f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.v = v
	return &remoteFixture{fixture: f, srv: srv, jwks: ks}
}

func edJWK(f *fixture) jose.JSONWebKey { return f.ed.jwk() }
func ecJWK(f *fixture) jose.JSONWebKey { return f.ec.jwk() }

// TestAttackA20RandomKids: a flood of tokens with random kids costs at most
// one JWKS fetch per refresh interval, however concurrent.
func TestAttackA20RandomKids(t *testing.T) {
	rf := newRemoteFixture(t, edJWK)
	good := rf.issue(t, rf.ed, nil)
	flood := func() {
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 25 {
					tok := rf.forge(t, rf.ed, func(h, _ map[string]any) { h["kid"] = fmt.Sprintf("rnd-%d-%d-%s", g, i, newJTI(t)) })
					_, err := rf.v.Verify(context.Background(), tok)
					if r := verify.ReasonOf(err); r != verify.ReasonUnknownKey {
						t.Errorf("random kid: reason %q (%v)", r, err)
					}
				}
			})
		}
		wg.Wait()
	}
	flood() // within the refresh interval of the initial fetch: no fetch
	if n := rf.srv.hitCount("/jwks"); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1 (the initial fetch)", n)
	}
	rf.clock.advance(verify.DefaultJWKSRefreshInterval)
	flood() // one refresh for 200 unknown kids
	if n := rf.srv.hitCount("/jwks"); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", n)
	}
	if _, err := rf.v.Verify(context.Background(), good); err != nil {
		t.Fatalf("good token after the flood: %v", err)
	}
}

// TestAttackA21Rotation: a pending key published before it signs is
// accepted; a key that vanishes from the JWKS is refused as revoked as soon
// as the verifier refreshes, cached tokens included; failed or partial
// refreshes never drop known keys.
func TestAttackA21Rotation(t *testing.T) {
	rf := newRemoteFixture(t, edJWK, ecJWK) // ed active, ec pending
	ctx := context.Background()
	edTok := rf.issue(t, rf.ed, nil)
	if _, err := rf.v.Verify(ctx, edTok); err != nil {
		t.Fatal(err)
	}
	// The pending key starts signing: accepted without a fetch.
	ecTok := rf.issue(t, rf.ec, nil)
	if _, err := rf.v.Verify(ctx, ecTok); err != nil {
		t.Fatalf("pending key's first token: %v", err)
	}
	if n := rf.srv.hitCount("/jwks"); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}

	// A failed refresh keeps both keys.
	rf.srv.set(func(s *issuerServer) { s.jwksStatus = 503 })
	rf.clock.advance(61 * time.Second)
	for _, tok := range []string{edTok, ecTok} {
		if _, err := rf.v.Verify(ctx, tok); err != nil {
			t.Fatalf("after a failed refresh: %v", err)
		}
	}
	// So does a document with no usable key, and one that lists the kid
	// with a key it cannot use.
	for _, body := range []string{
		`{"keys":[]}`,
		`{"keys":[{"kty":"oct","k":"AAAA","kid":"x"}]}`,
		`{"keys":[` + jwkJSON(t, rf.ec.jwk()) + `]`, // truncated
		`{"keys":[` + jwkJSON(t, rf.ec.jwk()) + `,{"kid":"` + rf.ed.kid + `","kty":"OKP","crv":"Ed25519","x":"bad"}]}`,
	} {
		rf.srv.set(func(s *issuerServer) { s.jwksStatus = 0; s.jwksBody = []byte(body) })
		rf.clock.advance(61 * time.Second)
		if _, err := rf.v.Verify(ctx, edTok); err != nil {
			t.Fatalf("after a partial refresh %.30q: %v", body, err)
		}
	}

	// custos revokes the Ed25519 key: it leaves the JWKS.
	rf.srv.set(func(s *issuerServer) { s.jwksBody = nil; s.keys = []jose.JSONWebKey{rf.ec.jwk()} })
	before := rf.srv.hitCount("/jwks")
	rf.clock.advance(61 * time.Second)
	_, err := rf.v.Verify(ctx, edTok) // cached in the Verifier, stale in the JWKS
	wantReason(t, err, verify.ReasonRevokedKey)
	if n := rf.srv.hitCount("/jwks"); n != before+1 {
		t.Fatalf("JWKS fetched %d times, want %d", n, before+1)
	}
	_, err = rf.v.Verify(ctx, rf.issue(t, rf.ed, nil))
	wantReason(t, err, verify.ReasonRevokedKey)
	if _, err := rf.v.Verify(ctx, ecTok); err != nil {
		t.Fatalf("surviving key: %v", err)
	}
	if _, err := rf.jwks.LookupKey(ctx, rf.ed.kid); !errors.Is(err, verify.ErrRevokedKey) {
		t.Fatalf("LookupKey of vanished kid: %v", err)
	}

	// A new pending key shows up: an unknown kid triggers a refresh once the
	// interval has passed.
	next := newEdSigner(t, 7)
	rf.srv.set(func(s *issuerServer) { s.keys = append(s.keys, next.jwk()) })
	rf.clock.advance(verify.DefaultJWKSRefreshInterval)
	if _, err := rf.v.Verify(ctx, rf.issue(t, next, nil)); err != nil {
		t.Fatalf("new key: %v", err)
	}
}

func jwkJSON(t *testing.T, k jose.JSONWebKey) string {
	t.Helper()
	b, err := k.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestJWKSFilter: only signature keys custos can use are taken.
func TestJWKSFilter(t *testing.T) {
	f := newFixture(t)
	ed := f.ed.jwk()
	encKey := ed
	encKey.Use = "enc"
	encKey.KeyID = "enc-key"
	noAlg := ed
	noAlg.Algorithm = ""
	noAlg.KeyID = "no-alg"
	wrongAlg := f.ec.jwk()
	wrongAlg.Algorithm = verify.AlgEdDSA
	wrongAlg.KeyID = "wrong-alg"
	private := jose.JSONWebKey{Key: f.ed.ed, KeyID: "private", Algorithm: verify.AlgEdDSA, Use: "sig"}
	srv := newIssuerServer(t, ed, encKey, noAlg, wrongAlg, private)
	ks, err := verify.NewRemoteKeySet(context.Background(), verify.JWKSConfig{Issuer: srv.URL, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if k, err := ks.LookupKey(context.Background(), f.ed.kid); err != nil || k.Algorithm != verify.AlgEdDSA {
		t.Fatalf("good key: %v, %v", k, err)
	}
	for _, kid := range []string{"enc-key", "no-alg", "wrong-alg", "private"} {
		if _, err := ks.LookupKey(context.Background(), kid); !errors.Is(err, verify.ErrUnknownKey) {
			t.Errorf("%s: err = %v, want ErrUnknownKey", kid, err)
		}
	}
}

func TestRemoteKeySetErrors(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	cases := []struct {
		name string
		set  func(s *issuerServer)
		want string
	}{
		{"issuer_mismatch", func(s *issuerServer) { s.discIssuer = "https://evil.test" }, "names issuer"},
		{"jwks_500", func(s *issuerServer) { s.jwksStatus = 500 }, "status 500"},
		{"jwks_too_large", func(s *issuerServer) {
			s.jwksBody = []byte(`{"keys":[],"pad":"` + strings.Repeat("x", verify.DefaultJWKSMaxSize) + `"}`)
		}, "size cap"},
		{"jwks_duplicate_kid", func(s *issuerServer) {
			k := jwkJSON(t, f.ed.jwk())
			s.jwksBody = []byte(`{"keys":[` + k + `,` + k + `]}`)
		}, "kid twice"},
		{"jwks_duplicate_member", func(s *issuerServer) {
			s.jwksBody = []byte(`{"keys":[` + jwkJSON(t, f.ed.jwk()) + `],"keys":[]}`)
		}, "duplicate"},
		{"jwks_no_usable_key", func(s *issuerServer) { s.jwksBody = []byte(`{"keys":[]}`) }, "no usable key"},
		{"jwks_null_keys", func(s *issuerServer) { s.keys = nil }, "no keys array"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newIssuerServer(t, f.ed.jwk())
			srv.set(tc.set)
			_, err := verify.NewRemoteKeySet(ctx, verify.JWKSConfig{Issuer: srv.URL})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	t.Run("redirect_not_followed", func(t *testing.T) {
		target := newIssuerServer(t, f.ed.jwk())
		srv := newIssuerServer(t)
		_, err := verify.NewRemoteKeySet(ctx, verify.JWKSConfig{Issuer: srv.URL, JWKSURI: srv.URL + "/redirect?to=" + target.URL})
		var fe *verify.FetchError
		if !errors.As(err, &fe) || fe.StatusCode != 302 {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestJWKSMaxAge: the key set is refreshed once max-age (bounded by MinAge
// and MaxAge) has passed, not before.
func TestJWKSMaxAge(t *testing.T) {
	cases := []struct {
		name   string
		maxAge int
		fresh  time.Duration // still no refresh after this long
	}{
		{"server_value", 120, 119 * time.Second},
		{"raised_to_min", 1, verify.DefaultJWKSMinAge - time.Second},
		{"capped_to_max", 86400, verify.DefaultJWKSMaxAge - time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			srv := newIssuerServer(t, f.ed.jwk())
			srv.set(func(s *issuerServer) { s.maxAge = tc.maxAge })
			ks, err := verify.NewRemoteKeySet(context.Background(), verify.JWKSConfig{Issuer: srv.URL, Now: f.clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			f.clock.advance(tc.fresh)
			if _, err := ks.LookupKey(context.Background(), f.ed.kid); err != nil {
				t.Fatal(err)
			}
			if n := srv.hitCount("/jwks"); n != 1 {
				t.Fatalf("fetched %d times before max-age, want 1", n)
			}
			f.clock.advance(time.Second)
			if _, err := ks.LookupKey(context.Background(), f.ed.kid); err != nil {
				t.Fatal(err)
			}
			if n := srv.hitCount("/jwks"); n != 2 {
				t.Fatalf("fetched %d times after max-age, want 2", n)
			}
		})
	}
}
