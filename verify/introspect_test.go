package verify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/custos-dev/custos/verify"
)

// introFixture verifies with a remote JWKS and an Introspector against an
// issuerServer whose introspection endpoint knows the fixture's receipts.
type introFixture struct {
	*fixture
	srv   *issuerServer
	intro *verify.Introspector
}

func newIntroFixture(t *testing.T) *introFixture {
	t.Helper()
	f := newFixture(t)
	srv := newIssuerServer(t, f.ed.jwk(), f.ec.jwk())
	// The fake issuer answers from the fixture's receipts, as custos would.
	srv.introspect = func(token string) map[string]any {
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			return map[string]any{"active": false}
		}
		payload, _ := b64.DecodeString(parts[1])
		var c map[string]any
		if json.Unmarshal(payload, &c) != nil {
			return map[string]any{"active": false}
		}
		jti, _ := c["jti"].(string)
		r, err := f.receipts.Receipt(context.Background(), jti)
		if err != nil || r.Revoked {
			return map[string]any{"active": false}
		}
		return map[string]any{"active": true, "jti": r.JTI, "sub": r.Subject, "client_id": r.ClientID,
			"iss": testIssuer, "exp": r.ExpiresAt.Unix(), "scope": c["scope"], "token_type": "Bearer"}
	}
	ctx := context.Background()
	ks, err := verify.NewRemoteKeySet(ctx, verify.JWKSConfig{Issuer: srv.URL, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	intro, err := verify.NewIntrospector(ctx, verify.IntrospectorConfig{
		Issuer: srv.URL, ClientID: introClientID, ClientSecret: introClientSecret, Now: f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.v, err = verify.New(verify.Config{Issuer: testIssuer, Audience: testAudience, Keys: ks, Receipts: intro, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &introFixture{fixture: f, srv: srv, intro: intro}
}

func TestIntrospector(t *testing.T) {
	ctx := context.Background()
	t.Run("active_then_cached", func(t *testing.T) {
		ff := newIntroFixture(t)
		tok := ff.issue(t, ff.ed, nil)
		for range 3 {
			if _, err := ff.v.Verify(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		if n := ff.srv.hitCount("/introspect"); n != 1 {
			t.Fatalf("introspected %d times, want 1", n)
		}
		ff.clock.advance(verify.DefaultIntrospectionCacheAge)
		if _, err := ff.v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if n := ff.srv.hitCount("/introspect"); n != 2 {
			t.Fatalf("introspected %d times after the cache age, want 2", n)
		}
	})
	t.Run("forged_is_not_active", func(t *testing.T) {
		ff := newIntroFixture(t)
		_, err := ff.v.Verify(ctx, ff.forge(t, ff.ed, nil))
		wantReason(t, err, verify.ReasonForged)
		if !strings.Contains(err.Error(), "not active") {
			t.Errorf("err = %v, want it to say not active", err)
		}
	})
	t.Run("revoked_seen_after_cache_age", func(t *testing.T) {
		ff := newIntroFixture(t)
		var jti string
		tok := ff.issue(t, ff.ed, func(_, c map[string]any) { jti = c["jti"].(string) })
		if _, err := ff.v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		ff.receipts.revoke(jti)
		ff.clock.advance(verify.DefaultIntrospectionCacheAge)
		_, err := ff.v.Verify(ctx, tok)
		wantReason(t, err, verify.ReasonForged) // introspection cannot tell revoked from forged
	})
	mismatch := []struct {
		name   string
		answer func(m map[string]any)
		want   verify.Reason
	}{
		{"other_jti", func(m map[string]any) { m["jti"] = "other" }, verify.ReasonForged},
		{"other_sub", func(m map[string]any) { m["sub"] = "acct-2" }, verify.ReasonForged},
		{"other_client", func(m map[string]any) { m["client_id"] = "x" }, verify.ReasonForged},
		{"no_jti", func(m map[string]any) { delete(m, "jti") }, verify.ReasonForged},
		{"other_iss", func(m map[string]any) { m["iss"] = "https://evil.test" }, verify.ReasonForged},
		{"other_exp", func(m map[string]any) { m["exp"] = 1 }, verify.ReasonForged},
		{"active_string", func(m map[string]any) { m["active"] = "true" }, verify.ReasonUnavailable},
		{"no_active", func(m map[string]any) { delete(m, "active") }, verify.ReasonUnavailable},
		{"huge", func(m map[string]any) { m["pad"] = strings.Repeat("x", verify.DefaultIntrospectionMaxSize) }, verify.ReasonUnavailable},
	}
	for _, tc := range mismatch {
		t.Run(tc.name, func(t *testing.T) {
			ff := newIntroFixture(t)
			answer := ff.srv.introspect
			ff.srv.set(func(s *issuerServer) {
				s.introspect = func(token string) map[string]any { m := answer(token); tc.answer(m); return m }
			})
			_, err := ff.v.Verify(ctx, ff.issue(t, ff.ed, nil))
			wantReason(t, err, tc.want)
		})
	}
	t.Run("wrong_credentials_fail_closed", func(t *testing.T) {
		ff := newIntroFixture(t)
		intro, err := verify.NewIntrospector(ctx, verify.IntrospectorConfig{
			Issuer: ff.srv.URL, ClientID: introClientID, ClientSecret: "wrong", Now: ff.clock.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		v, err := verify.New(verify.Config{Issuer: testIssuer, Audience: testAudience, Keys: ff.keys, Receipts: intro, Now: ff.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(ctx, ff.issue(t, ff.ed, nil))
		wantReason(t, err, verify.ReasonUnavailable)
		var fe *verify.FetchError
		if !errors.As(err, &fe) || fe.StatusCode != 401 {
			t.Fatalf("err = %v, want a 401 FetchError", err)
		}
	})
	t.Run("check_receipt_without_token_fails_closed", func(t *testing.T) {
		ff := newIntroFixture(t)
		err := ff.intro.CheckReceipt(ctx, &verify.Claims{JTI: "x"})
		if err == nil || errors.Is(err, verify.ErrNoReceipt) || errors.Is(err, verify.ErrTokenRevoked) {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestSecretNeverPrints: the introspection secret does not appear in fmt,
// slog or JSON output of the configuration.
func TestSecretNeverPrints(t *testing.T) {
	cfg := verify.IntrospectorConfig{Issuer: testIssuer, ClientID: introClientID, ClientSecret: introClientSecret}
	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		fmt.Fprintf(&out, verb+"\n", cfg)
		fmt.Fprintf(&out, verb+"\n", cfg.ClientSecret)
	}
	slog.New(slog.NewJSONHandler(&out, nil)).Info("cfg", "cfg", cfg, "secret", cfg.ClientSecret)
	slog.New(slog.NewTextHandler(&out, nil)).Info("cfg", "secret", cfg.ClientSecret)
	b, err := json.Marshal(struct{ Secret verify.Secret }{cfg.ClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	out.Write(b)
	if strings.Contains(out.String(), introClientSecret) || strings.Contains(out.String(), fmt.Sprintf("%x", introClientSecret)) {
		t.Fatalf("secret printed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "[redacted]") {
		t.Fatalf("no redaction marker:\n%s", out.String())
	}
}

func TestNewIntrospectorErrors(t *testing.T) {
	ctx := context.Background()
	srv := newIssuerServer(t)
	for _, cfg := range []verify.IntrospectorConfig{
		{Issuer: srv.URL, ClientID: introClientID},
		{Issuer: srv.URL, ClientSecret: "x"},
		{ClientID: introClientID, ClientSecret: "x"},
	} {
		if _, err := verify.NewIntrospector(ctx, cfg); !errors.Is(err, verify.ErrInvalidConfig) {
			t.Errorf("%+v: err = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if _, err := verify.NewIntrospector(ctx, verify.IntrospectorConfig{
		Issuer: "https://id.custos.test", Endpoint: "http://id.custos.test/introspect", ClientID: "a", ClientSecret: "b",
	}); err == nil {
		t.Error("plain-http endpoint for an https issuer accepted")
	}
}
