package issuer

import (
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"github.com/custos-dev/custos/internal/store"
)

func TestPKCE(t *testing.T) {
	// RFC 7636 Appendix B.
	const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	const challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
	if !pkceMatches(verifier, challenge) {
		t.Fatal("RFC 7636 example does not match")
	}
	for _, v := range []string{
		"", "short", verifier + "x", strings.Repeat("a", 129), strings.Repeat("a", 42),
		"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjX!", // outside the unreserved set
	} {
		if pkceMatches(v, challenge) {
			t.Errorf("verifier %q accepted", v)
		}
	}
	long := strings.Repeat("~", 128)
	sum := sha256.Sum256([]byte(long))
	if !pkceMatches(long, base64.RawURLEncoding.EncodeToString(sum[:])) {
		t.Error("a 128-character verifier is valid")
	}
	if !validChallenge(challenge) || validChallenge(challenge+"=") || validChallenge("plain") {
		t.Error("validChallenge")
	}
}

func TestGrantableScopeAndAudience(t *testing.T) {
	c := store.Client{Scopes: []string{"openid", "profile", "orders:read"}, Audiences: []string{"https://api.a", "https://api.b"}}
	got, oe := grantableScope(c, "openid  orders:read openid")
	if oe != nil || !slices.Equal(got, []string{"openid", "orders:read"}) {
		t.Fatalf("grantableScope = %v, %v", got, oe)
	}
	if _, oe := grantableScope(c, "openid admin"); oe == nil || oe.Code != "invalid_scope" {
		t.Fatalf("unregistered scope: %v", oe)
	}
	if got, oe := grantableScope(store.Client{}, "openid email"); oe != nil || len(got) != 2 {
		t.Fatalf("standard scopes for a client without scopes: %v %v", got, oe)
	}
	if a, oe := audienceFor(c, ""); oe != nil || a != "https://api.a" {
		t.Fatalf("default audience %q %v", a, oe)
	}
	if a, oe := audienceFor(c, "https://api.b"); oe != nil || a != "https://api.b" {
		t.Fatalf("requested audience %q %v", a, oe)
	}
	if _, oe := audienceFor(c, "https://evil"); oe == nil || oe.Code != "invalid_target" {
		t.Fatalf("unregistered resource: %v", oe)
	}
	if a, _ := audienceFor(store.Client{}, ""); a != DefaultAudience {
		t.Fatalf("audience of a client without audiences: %q", a)
	}
}

func TestUntrustedClaimsKeepsIdentifiersOnly(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	tok := enc([]byte(`{"alg":"EdDSA","kid":"k1","typ":"at+jwt","x5u":"https://evil"}`)) + "." +
		enc([]byte(`{"sub":"acc_1","jti":"j1","exp":1700000000,"aud":["a","b"],"email":"kim@example.com","scope":"`+strings.Repeat("s", 1000)+`"}`)) + ".c2ln"
	got := untrustedClaims(tok)
	if got["kid"] != "k1" || got["sub"] != "acc_1" || got["jti"] != "j1" || got["exp"] != int64(1700000000) || got["aud"] != "a" {
		t.Fatalf("untrustedClaims = %v", got)
	}
	if _, ok := got["email"]; ok {
		t.Error("personal data copied into the event")
	}
	if _, ok := got["x5u"]; ok {
		t.Error("unknown header copied into the event")
	}
	if len(got["scope"].(string)) != 256 {
		t.Errorf("scope not truncated: %d bytes", len(got["scope"].(string)))
	}
	if len(untrustedClaims("not a token")) != 0 {
		t.Error("garbage produced fields")
	}
}

func TestConfigValidation(t *testing.T) {
	for _, iss := range []string{"", "http://login.example", "https://login.example/", "https://login.example?x=1", "ftp://x"} {
		if _, err := (Config{Issuer: iss}).withDefaults(); err == nil {
			t.Errorf("issuer %q accepted", iss)
		}
	}
	for _, iss := range []string{"https://login.example", "http://127.0.0.1:8080", "http://localhost:8080"} {
		if _, err := (Config{Issuer: iss}).withDefaults(); err != nil {
			t.Errorf("issuer %q refused: %v", iss, err)
		}
	}
	if _, err := (Config{Issuer: "https://a", AccessTokenTTL: 16 * 60e9}).withDefaults(); err == nil {
		t.Error("a 16-minute access token lifetime was accepted")
	}
	c, _ := (Config{Issuer: "https://a"}).withDefaults()
	if c.AccessTokenTTL != DefaultAccessTokenTTL {
		t.Errorf("default lifetime %v", c.AccessTokenTTL)
	}
}
