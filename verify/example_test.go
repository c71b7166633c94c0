package verify_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/custos-dev/custos/verify"
)

// A resource server verifies custos access tokens with the issuer's
// published keys (JWKS) and asks the issuer, by introspection, whether each
// token has a receipt. Here an httptest server stands in for custos: it
// issued one token (jti "t-1") and nothing else.
func Example() {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)) // custos's signing key
	tp, _ := (&jose.JSONWebKey{Key: priv.Public()}).Thumbprint(crypto.SHA256)
	kid := base64.RawURLEncoding.EncodeToString(tp)

	var issuer string
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{
			"issuer": issuer, "jwks_uri": issuer + "/jwks", "introspection_endpoint": issuer + "/introspect",
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: priv.Public(), KeyID: kid, Algorithm: "EdDSA", Use: "sig"},
		}})
	})
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		if id, secret, _ := r.BasicAuth(); id != "orders-api" || secret != "orders-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		resp := map[string]any{"active": false}
		if strings.Contains(r.PostFormValue("token"), ".") && tokenJTI(r.PostFormValue("token")) == "t-1" {
			resp = map[string]any{"active": true, "jti": "t-1", "sub": "acct-7", "client_id": "shop-web"}
		}
		json.NewEncoder(w).Encode(resp)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	issuer = srv.URL

	keys, err := verify.NewRemoteKeySet(ctx, verify.JWKSConfig{Issuer: issuer})
	if err != nil {
		fmt.Println(err)
		return
	}
	receipts, err := verify.NewIntrospector(ctx, verify.IntrospectorConfig{
		Issuer: issuer, ClientID: "orders-api", ClientSecret: "orders-secret",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	v, err := verify.New(verify.Config{
		Issuer:   issuer,
		Audience: "https://orders.example",
		Keys:     keys,
		Receipts: receipts,
		Now:      func() time.Time { return now }, // fixed for the example; omit in real code
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	mint := func(jti string) string {
		header := `{"alg":"EdDSA","typ":"at+jwt","kid":"` + kid + `"}`
		claims := fmt.Sprintf(`{"iss":%q,"sub":"acct-7","aud":"https://orders.example","exp":%d,"iat":%d,`+
			`"jti":%q,"client_id":"shop-web","scope":"orders:read","sid":"s-1"}`,
			issuer, now.Add(10*time.Minute).Unix(), now.Unix(), jti)
		input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(claims))
		return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(input)))
	}

	c, err := v.Verify(ctx, mint("t-1"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("subject:", c.Subject, "may read orders:", c.HasScope("orders:read"))

	// The same key signs a token custos never issued: the leaked-key case.
	_, err = v.Verify(ctx, mint("t-forged"))
	fmt.Println("refused:", verify.ReasonOf(err))

	_, err = v.Verify(ctx, "not-a-token")
	fmt.Println("refused:", verify.ReasonOf(err))
	// Output:
	// subject: acct-7 may read orders: true
	// refused: forged_token
	// refused: malformed
}

// tokenJTI reads the jti of a token the fake issuer is asked about.
func tokenJTI(token string) string {
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct{ JTI string }
	json.Unmarshal(payload, &c)
	return c.JTI
}
