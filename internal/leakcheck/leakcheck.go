// Package leakcheck finds secrets in text that should never contain them:
// logs, errors, events, CLI output, backups. It is used only by tests: a test
// collects the secrets it can reach (private key bytes, data-encryption keys,
// root keys) and the text the code under test produced, and asks Find whether
// any secret appears in any of the encodings a careless program might use.
//
// The encodings covered are the raw bytes, hexadecimal in either case,
// base64 and base64url (padded or not, and at every byte alignment, so a
// secret embedded anywhere inside a larger encoded blob such as a PKCS#8 DER
// or a PEM body is still found), fmt's %v and %#v renderings of a byte slice,
// and Go-quoted strings. Find also searches the haystack with all white space
// removed, so line-wrapped PEM bodies and hex dumps are covered.
//
// Secrets shorter than MinSecretLen bytes make matches meaningless (they are
// found by chance in any large text); Encodings still encodes them, but tests
// should use real key-sized secrets.
package leakcheck

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// MinSecretLen is the shortest secret for which a match is meaningful.
const MinSecretLen = 12

// encoding is one rendering of a secret, with a name for reports.
type encoding struct {
	name  string
	value string
}

func encodings(secret []byte) []encoding {
	var out []encoding
	add := func(name, v string) {
		if v == "" {
			return
		}
		for _, e := range out {
			if e.value == v {
				return
			}
		}
		out = append(out, encoding{name, v})
	}
	add("raw", string(secret))
	add("hex", hex.EncodeToString(secret))
	add("HEX", strings.ToUpper(hex.EncodeToString(secret)))
	// base64 at each of the three byte alignments: encode k zero bytes in
	// front of the secret and keep only the characters made entirely of
	// secret bits. Those characters appear in the encoding of any blob
	// holding the secret at an offset ≡ k (mod 3).
	for _, alpha := range []struct {
		name string
		enc  *base64.Encoding
	}{{"base64", base64.RawStdEncoding}, {"base64url", base64.RawURLEncoding}} {
		for k := range 3 {
			buf := make([]byte, k+len(secret))
			copy(buf[k:], secret)
			s := alpha.enc.EncodeToString(buf)
			lo := (8*k + 5) / 6
			hi := 8 * len(buf) / 6
			if hi > lo {
				add(fmt.Sprintf("%s (alignment %d)", alpha.name, k), s[lo:hi])
			}
		}
	}
	// fmt's %v of a []byte: "[1 2 3]"; %#v: "[]byte{0x1, 0x2, 0x3}".
	dec := make([]string, len(secret))
	gohex := make([]string, len(secret))
	for i, b := range secret {
		dec[i] = strconv.Itoa(int(b))
		gohex[i] = fmt.Sprintf("%#x", b)
	}
	add("decimal list (%v)", strings.Join(dec, " "))
	add("Go hex list (%#v)", strings.Join(gohex, ", "))
	// %q renders rune by rune, so bytes next to the secret can merge with
	// its first or last bytes into one rune. Quote only from the first to
	// just before the last byte that is not a UTF-8 continuation byte: no
	// rune can straddle those boundaries.
	isCont := func(b byte) bool { return b&0xC0 == 0x80 }
	p, q := 0, len(secret)-1
	for p < len(secret) && isCont(secret[p]) {
		p++
	}
	for q > p && isCont(secret[q]) {
		q--
	}
	if q > p {
		quoted := strconv.Quote(string(secret[p:q]))
		add("Go-quoted (%q)", quoted[1:len(quoted)-1])
	}
	return out
}

// Encodings returns every rendering of secret that Find looks for. The
// base64 forms are trimmed to the characters that depend only on the secret,
// so they match the secret wherever it sits inside a larger encoded blob.
func Encodings(secret []byte) []string {
	encs := encodings(secret)
	out := make([]string, len(encs))
	for i, e := range encs {
		out[i] = e.value
	}
	return out
}

// Find reports which secrets occur in haystack, in which encoding. Each
// finding names the secret by its position in the argument list and the
// encoding, never by its value, so a failing test does not print the secret
// it was protecting. An empty result means none was found.
func Find(haystack []byte, secrets ...[]byte) []string {
	compact := bytes.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, haystack)
	var found []string
	for i, secret := range secrets {
		for _, e := range encodings(secret) {
			v := []byte(e.value)
			switch {
			case bytes.Contains(haystack, v):
				found = append(found, fmt.Sprintf("secret #%d as %s", i, e.name))
			case bytes.Contains(compact, v):
				found = append(found, fmt.Sprintf("secret #%d as %s, wrapped across lines", i, e.name))
			}
		}
	}
	return found
}
