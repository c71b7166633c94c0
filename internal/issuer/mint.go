package issuer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"hash"
	"time"

	"github.com/custos-dev/custos/internal/keys"
)

// Token types in the JWS typ header.
const (
	typAccess = "at+jwt" // RFC 9068
	typID     = "JWT"
)

// accessClaims are an access token's claims (docs/spec/access-token.md).
type accessClaims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	Audience  string `json:"aud"`
	ExpiresAt int64  `json:"exp"`
	IssuedAt  int64  `json:"iat"`
	JTI       string `json:"jti"`
	ClientID  string `json:"client_id"`
	Scope     string `json:"scope,omitempty"`
	SessionID string `json:"sid,omitempty"`
	AuthTime  int64  `json:"auth_time,omitempty"`
}

// idClaims are an ID token's claims (OpenID Connect Core §2).
type idClaims struct {
	Issuer          string `json:"iss"`
	Subject         string `json:"sub"`
	Audience        string `json:"aud"`
	ExpiresAt       int64  `json:"exp"`
	IssuedAt        int64  `json:"iat"`
	JTI             string `json:"jti"`
	AuthTime        int64  `json:"auth_time,omitempty"`
	Nonce           string `json:"nonce,omitempty"`
	SessionID       string `json:"sid,omitempty"`
	AccessTokenHash string `json:"at_hash,omitempty"`
	userClaims
}

// userClaims are the profile claims the granted scopes allow.
type userClaims struct {
	Name          string `json:"name,omitempty"`
	Email         string `json:"email,omitempty"`
	EmailVerified *bool  `json:"email_verified,omitempty"`
	Phone         string `json:"phone_number,omitempty"`
}

// signJWT signs claims as a compact JWS with the given typ.
func signJWT(sk *keys.SigningKey, typ string, claims any) (string, error) {
	return keys.SignJWT(sk, typ, claims)
}

// tokenHash is the OpenID Connect at_hash of an access token for alg.
func tokenHash(alg, token string) string {
	var h hash.Hash
	switch alg {
	case "EdDSA":
		h = sha512.New() // Ed25519, as OpenID Connect and go-oidc use
	default:
		h = sha256.New()
	}
	h.Write([]byte(token))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// newID returns a time stamp and 80 random bits, base64url: jti, session
// and family ids.
func newID() string {
	var b [16]byte
	stamp(b[:])
	rand.Read(b[stampLen:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// stampLen is the length of the time stamp that starts ids and secrets.
const stampLen = 6

// stamp writes the current Unix time in milliseconds, big-endian, into
// b[:stampLen]. Ids and secrets start with it so that the rows keyed by
// them (receipts, refresh tokens, codes) are inserted next to each other
// at the end of their indexes instead of at random pages: each commit
// then dirties a few pages rather than one per row. What follows the
// stamp is random: 80 bits in an id, 208 in a secret.
func stamp(b []byte) {
	ms := uint64(time.Now().UnixMilli())
	for i := stampLen - 1; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
}

// newSecret returns a secret for a code or refresh token: a time stamp and
// 208 random bits, base64url.
func newSecret() string {
	var b [32]byte
	stamp(b[:])
	rand.Read(b[stampLen:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// secretHash is how codes and refresh tokens are stored and looked up: the
// secret's time stamp (public, it orders the rows) followed by its
// SHA-256. The secrets carry 208 random bits, so a plain SHA-256 cannot be
// brute-forced. A value that is not a secret custos made hashes to a key
// no row has.
func secretHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	var key [stampLen + sha256.Size]byte
	if raw, err := base64.RawURLEncoding.DecodeString(s); err == nil && len(raw) == 32 {
		copy(key[:], raw[:stampLen])
	}
	copy(key[stampLen:], h[:])
	return key[:]
}

// unixTime converts to a NumericDate.
func unixTime(t time.Time) int64 { return t.Unix() }

// signer returns the active signing key, failing closed.
func (is *Issuer) signer(ctx context.Context) (*keys.SigningKey, error) {
	sk, err := is.custody.Signer(ctx)
	if err != nil {
		is.log.Error("no signing key", "err", err)
		return nil, err
	}
	return sk, nil
}
