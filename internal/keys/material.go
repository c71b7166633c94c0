package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// generateKey makes a new private key for alg with crypto/rand.
func generateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case AlgEdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("keys: generate Ed25519 key: %w", err)
		}
		return priv, nil
	case AlgES256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("keys: generate P-256 key: %w", err)
		}
		return priv, nil
	}
	return nil, fmt.Errorf("keys: cannot generate %q keys: %w", alg, ErrUnsupportedKey)
}

// algorithmOf returns the JWS algorithm for a public key custody accepts.
func algorithmOf(pub crypto.PublicKey) (string, error) {
	switch p := pub.(type) {
	case ed25519.PublicKey:
		if len(p) == ed25519.PublicKeySize {
			return AlgEdDSA, nil
		}
	case *ecdsa.PublicKey:
		if p.Curve == elliptic.P256() {
			return AlgES256, nil
		}
		return "", fmt.Errorf("keys: ECDSA curve %s is not P-256: %w", p.Curve.Params().Name, ErrUnsupportedKey)
	}
	return "", fmt.Errorf("keys: %T keys are not Ed25519 or P-256: %w", pub, ErrUnsupportedKey)
}

// thumbprint returns the RFC 7638 SHA-256 thumbprint of pub, base64url: the kid.
func thumbprint(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("keys: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// publicJWK is the JWKS entry for a key.
func publicJWK(pub crypto.PublicKey, kid, alg string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: "sig"}
}

// parsePublicJWK decodes a stored public JWK and checks it is the public
// half of a key of algorithm alg whose thumbprint is kid.
func parsePublicJWK(b []byte, kid, alg string) (crypto.PublicKey, error) {
	var jwk jose.JSONWebKey
	if err := json.Unmarshal(b, &jwk); err != nil {
		return nil, fmt.Errorf("keys: key %s: public JWK: %w", kid, err)
	}
	if !jwk.IsPublic() {
		return nil, fmt.Errorf("keys: key %s: stored JWK is not a public key", kid)
	}
	got, err := algorithmOf(jwk.Key)
	if err != nil {
		return nil, fmt.Errorf("keys: key %s: %w", kid, err)
	}
	if got != alg || jwk.KeyID != kid || (jwk.Algorithm != "" && jwk.Algorithm != alg) {
		return nil, fmt.Errorf("keys: key %s: stored JWK does not match its record (kid %q, alg %q/%q)", kid, jwk.KeyID, jwk.Algorithm, got)
	}
	tp, err := thumbprint(jwk.Key)
	if err != nil {
		return nil, err
	}
	if tp != kid {
		return nil, fmt.Errorf("keys: key %s: stored JWK has thumbprint %s", kid, tp)
	}
	return jwk.Key, nil
}

// parsePKCS8 decodes an opened private key and checks it is of alg.
func parsePKCS8(der []byte, alg string) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		// The parse error never contains key bytes, but is dropped anyway.
		return nil, errors.New("keys: opened private key is not valid PKCS#8")
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("keys: opened private key of type %T cannot sign", k)
	}
	got, err := algorithmOf(s.Public())
	if err != nil {
		return nil, err
	}
	if got != alg {
		return nil, fmt.Errorf("keys: opened private key is %s, record says %s", got, alg)
	}
	return s, nil
}

// parseImportPEM decodes one PEM block holding an Ed25519 or P-256 private
// key, as PKCS#8 ("PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY"). Anything
// else—other key types, encrypted PEM, several blocks, trailing data—is
// refused with an error wrapping ErrUnsupportedKey.
func parseImportPEM(data []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("keys: import: no PEM block: %w", ErrUnsupportedKey)
	}
	defer clear(block.Bytes)
	if len(trimSpace(rest)) != 0 {
		return nil, fmt.Errorf("keys: import: data after the PEM block (one key per import): %w", ErrUnsupportedKey)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("keys: import: PEM headers (encrypted keys) are not supported: %w", ErrUnsupportedKey)
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("keys: import: PEM type %q; want PRIVATE KEY or EC PRIVATE KEY: %w", block.Type, ErrUnsupportedKey)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: import: %s block does not parse: %w", block.Type, ErrUnsupportedKey)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("keys: import: %T keys are not supported: %w", k, ErrUnsupportedKey)
	}
	if _, err := algorithmOf(s.Public()); err != nil {
		return nil, fmt.Errorf("keys: import: %w", err)
	}
	return s, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	return b
}

// SigningKey is the active key as code outside custody sees it: its kid,
// algorithm and a crypto.Signer that cannot be converted back into private
// key bytes. Printing, logging or JSON-encoding it shows only kid and
// algorithm.
type SigningKey struct {
	ID        string
	Algorithm string
	Signer    crypto.Signer
}

// SignJWS returns the JWS signature (RFC 7515) over signingInput,
// "base64url(header).base64url(payload)": raw Ed25519 for EdDSA, and for
// ES256 ECDSA over SHA-256 as the fixed 64-byte r‖s that JWS requires, never
// DER.
func (k *SigningKey) SignJWS(signingInput []byte) ([]byte, error) {
	switch k.Algorithm {
	case AlgEdDSA:
		sig, err := k.Signer.Sign(rand.Reader, signingInput, crypto.Hash(0))
		if err != nil {
			return nil, fmt.Errorf("keys: sign with %s: %w", k.ID, err)
		}
		return sig, nil
	case AlgES256:
		digest := sha256.Sum256(signingInput)
		der, err := k.Signer.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("keys: sign with %s: %w", k.ID, err)
		}
		return derToRaw(der, 32)
	}
	return nil, fmt.Errorf("keys: sign with %s: algorithm %q: %w", k.ID, k.Algorithm, ErrUnsupportedKey)
}

// derToRaw converts an ASN.1 ECDSA signature into r‖s, each size bytes.
func derToRaw(der []byte, size int) ([]byte, error) {
	var r, s big.Int
	var inner cryptobyte.String
	in := cryptobyte.String(der)
	if !in.ReadASN1(&inner, asn1.SEQUENCE) || !in.Empty() ||
		!inner.ReadASN1Integer(&r) || !inner.ReadASN1Integer(&s) || !inner.Empty() {
		return nil, errors.New("keys: signer returned a malformed ECDSA signature")
	}
	if r.Sign() <= 0 || s.Sign() <= 0 || r.BitLen() > 8*size || s.BitLen() > 8*size {
		return nil, errors.New("keys: signer returned an out-of-range ECDSA signature")
	}
	out := make([]byte, 2*size)
	r.FillBytes(out[:size])
	s.FillBytes(out[size:])
	return out, nil
}

func (k *SigningKey) String() string {
	if k == nil {
		return "SigningKey(nil)"
	}
	return fmt.Sprintf("SigningKey(kid=%s alg=%s)", k.ID, k.Algorithm)
}

// GoString, Format, LogValue and MarshalJSON show what String shows.
func (k *SigningKey) GoString() string           { return k.String() }
func (k *SigningKey) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }
func (k *SigningKey) LogValue() slog.Value       { return slog.StringValue(k.String()) }
func (k *SigningKey) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"kid": k.ID, "alg": k.Algorithm})
}

// keySigner is the crypto.Signer custody hands out. Its type is unexported so
// callers cannot type-assert to ed25519.PrivateKey or *ecdsa.PrivateKey, and
// it refuses to sign once its key is revoked or long retired.
type keySigner struct {
	kid    string
	key    crypto.Signer
	usable func(kid string) error
}

func (s *keySigner) Public() crypto.PublicKey { return s.key.Public() }

func (s *keySigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := s.usable(s.kid); err != nil {
		return nil, err
	}
	return s.key.Sign(r, digest, opts)
}

func (s *keySigner) String() string               { return "Signer(kid=" + s.kid + ")" }
func (s *keySigner) GoString() string             { return s.String() }
func (s *keySigner) Format(f fmt.State, _ rune)   { io.WriteString(f, s.String()) }
func (s *keySigner) LogValue() slog.Value         { return slog.StringValue(s.String()) }
func (s *keySigner) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// SignJWT signs claims as a compact JWS with header alg, typ and kid.
func SignJWT(sk *SigningKey, typ string, claims any) (string, error) {
	header, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
		Kid string `json:"kid"`
	}{sk.Algorithm, typ, sk.ID})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	sig, err := sk.SignJWS([]byte(input))
	if err != nil {
		return "", fmt.Errorf("keys: signing with key %s: %w", sk.ID, err)
	}
	return input + "." + enc.EncodeToString(sig), nil
}
