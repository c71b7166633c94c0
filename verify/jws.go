package verify

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
)

// Algorithms custos signs access tokens with. They are the only values
// Config.Algorithms may hold; "none", HMAC and RSA are never accepted.
const (
	AlgEdDSA = "EdDSA" // Ed25519 (RFC 8037)
	AlgES256 = "ES256" // ECDSA P-256 SHA-256, raw r‖s (RFC 7518 §3.4)
)

const (
	// maxHeaderSize bounds the decoded JOSE header. custos headers are about
	// 100 bytes.
	maxHeaderSize = 1024
	// maxKeyIDSize bounds kid, in bytes.
	maxKeyIDSize = 128
	// signatureSize is the size of both EdDSA and raw ES256 signatures.
	signatureSize = 64
)

// b64 is the only base64 custos accepts: URL alphabet, no padding, no spare
// low bits set. It still skips CR and LF, so callers check the alphabet first.
var b64 = base64.RawURLEncoding.Strict()

var (
	errSegments      = errors.New("token is not three non-empty dot-separated segments")
	errAlphabet      = errors.New("token has a byte outside the base64url alphabet")
	errBase64        = errors.New("segment is not canonical unpadded base64url")
	errHeaderSize    = errors.New("header too large")
	errSignatureSize = errors.New("signature has the wrong length")
	errSignature     = errors.New("signature does not verify")
	errKeyType       = errors.New("key type does not match the algorithm")
)

// compact is a compact JWS split into its parts.
type compact struct {
	signingInput string // b64(header) "." b64(payload)
	header       []byte
	payload      []byte
	signature    []byte
}

// splitCompact splits a compact JWS strictly: exactly three non-empty
// segments made only of base64url characters, each canonical base64url
// without padding.
func splitCompact(token string) (compact, error) {
	for i := 0; i < len(token); i++ {
		if !isB64URL(token[i]) && token[i] != '.' {
			return compact{}, errAlphabet
		}
	}
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h == "" || p == "" || s == "" || strings.IndexByte(s, '.') >= 0 {
		return compact{}, errSegments
	}
	if b64.DecodedLen(len(h)) > maxHeaderSize {
		return compact{}, errHeaderSize
	}
	var c compact
	var err error
	if c.header, err = b64.DecodeString(h); err != nil {
		return compact{}, fmt.Errorf("header: %w", errBase64)
	}
	if c.payload, err = b64.DecodeString(p); err != nil {
		return compact{}, fmt.Errorf("payload: %w", errBase64)
	}
	if c.signature, err = b64.DecodeString(s); err != nil {
		return compact{}, fmt.Errorf("signature: %w", errBase64)
	}
	c.signingInput = token[:len(h)+1+len(p)]
	return c, nil
}

func isB64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// header is a custos JOSE header: alg, typ and kid, nothing else.
type header struct {
	alg, typ, kid string
}

// parseHeader parses and checks a decoded JOSE header against the allowed
// algorithms. It returns an *Error whose Reason says which rule failed. The
// rules run in this order (docs/spec/access-token.md):
//
//  1. one strict JSON object (strictObject)        → malformed
//  2. alg a string on the allow-list (exact case)  → bad_algorithm
//  3. no crit                                      → unknown_crit
//  4. no member other than alg, typ, kid           → untrusted_header
//  5. typ "at+jwt" or "application/at+jwt" (any case) → wrong_type
//  6. kid 1–128 bytes of visible ASCII             → malformed
func parseHeader(b []byte, algorithms []string) (header, error) {
	if len(b) > maxHeaderSize {
		return header{}, refuse(ReasonMalformed, errHeaderSize)
	}
	members, err := strictObject(b)
	if err != nil {
		return header{}, refuse(ReasonMalformed, fmt.Errorf("header: %w", err))
	}
	var h header
	var ok bool
	if h.alg, ok = jsonString(members["alg"]); !ok {
		return header{}, refuse(ReasonAlgorithm, errors.New("header has no string alg"))
	}
	if !slices.Contains(algorithms, h.alg) {
		return header{}, refuse(ReasonAlgorithm, fmt.Errorf("alg %.16q not allowed", h.alg))
	}
	if _, ok := members["crit"]; ok {
		return header{}, refuse(ReasonCritical, errors.New("header has crit; no extension is understood"))
	}
	var extra []string
	for name := range members {
		switch name {
		case "alg", "typ", "kid":
		default:
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		return header{}, refuse(ReasonHeader, fmt.Errorf("header member %.32q is never trusted", extra[0]))
	}
	if h.typ, ok = jsonString(members["typ"]); !ok {
		return header{}, refuse(ReasonType, errors.New("header has no string typ"))
	}
	if !strings.EqualFold(h.typ, "at+jwt") && !strings.EqualFold(h.typ, "application/at+jwt") {
		return header{}, refuse(ReasonType, fmt.Errorf("typ %.32q is not at+jwt", h.typ))
	}
	if h.kid, ok = jsonString(members["kid"]); !ok {
		return header{}, refuse(ReasonMalformed, errors.New("header has no string kid"))
	}
	if !validKeyID(h.kid) {
		return header{}, refuse(ReasonMalformed, errors.New("kid is empty, too long or not visible ASCII"))
	}
	return h, nil
}

// validKeyID reports whether kid is 1–128 bytes of visible ASCII (0x21–0x7E).
func validKeyID(kid string) bool {
	if kid == "" || len(kid) > maxKeyIDSize {
		return false
	}
	for i := 0; i < len(kid); i++ {
		if kid[i] < 0x21 || kid[i] > 0x7e {
			return false
		}
	}
	return true
}

// p256N is the order of the P-256 group.
var p256N = elliptic.P256().Params().N

// verifySignature checks sig over signingInput with pub under alg. It is the
// only place signatures are checked:
//
//   - EdDSA: pub is a 32-byte ed25519.PublicKey, sig is 64 bytes, checked by
//     crypto/ed25519 (RFC 8032 verification; non-canonical S is refused).
//   - ES256: pub is a P-256 *ecdsa.PublicKey, sig is exactly 64 bytes r‖s
//     (DER is refused), 1 ≤ r, s < n, checked by crypto/ecdsa over SHA-256.
//     High s is accepted as RFC 7518 allows: (r, n−s) verifies too, which is
//     why revocation keys on jti and never on token bytes.
func verifySignature(alg string, pub any, signingInput, sig []byte) error {
	if len(sig) != signatureSize {
		return errSignatureSize
	}
	switch alg {
	case AlgEdDSA:
		k, ok := pub.(ed25519.PublicKey)
		if !ok || len(k) != ed25519.PublicKeySize {
			return errKeyType
		}
		if !ed25519.Verify(k, signingInput, sig) {
			return errSignature
		}
		return nil
	case AlgES256:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k == nil || k.Curve != elliptic.P256() {
			return errKeyType
		}
		r := new(big.Int).SetBytes(sig[:32])
		s := new(big.Int).SetBytes(sig[32:])
		if r.Sign() == 0 || s.Sign() == 0 || r.Cmp(p256N) >= 0 || s.Cmp(p256N) >= 0 {
			return errSignature
		}
		digest := sha256.Sum256(signingInput)
		if !ecdsa.Verify(k, digest[:], r, s) {
			return errSignature
		}
		return nil
	default:
		return fmt.Errorf("algorithm %.16q: %w", alg, errKeyType)
	}
}
