package leakcheck

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	secret := make([]byte, 32)
	other := make([]byte, 32)
	rand.Read(secret)
	rand.Read(other)
	embed := func(pre int) []byte { // secret inside a larger blob at offset pre
		b := make([]byte, pre+len(secret)+5)
		rand.Read(b)
		copy(b[pre:], secret)
		return b
	}
	j, _ := json.Marshal(struct{ K []byte }{secret})
	tests := []struct {
		name     string
		haystack string
		want     bool
	}{
		{"raw", "x" + string(secret) + "y", true},
		{"hex", "key=" + hex.EncodeToString(secret), true},
		{"HEX", strings.ToUpper(hex.EncodeToString(embed(3))), true},
		{"base64 offset 0", base64.StdEncoding.EncodeToString(embed(0)), true},
		{"base64 offset 1", base64.StdEncoding.EncodeToString(embed(1)), true},
		{"base64 offset 2", base64.StdEncoding.EncodeToString(embed(2)), true},
		{"base64url offset 4", base64.RawURLEncoding.EncodeToString(embed(4)), true},
		{"base64url offset 5", base64.URLEncoding.EncodeToString(embed(5)), true},
		{"PEM-wrapped", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: embed(50)})), true},
		{"fmt %v", fmt.Sprintf("%v", embed(7)), true},
		{"fmt %#v", fmt.Sprintf("%#v", embed(7)), true},
		{"fmt %q", fmt.Sprintf("%q", string(embed(7))), true},
		{"fmt %x", fmt.Sprintf("%x", embed(9)), true},
		{"JSON []byte", string(j), true},
		{"other secret raw", string(other), false},
		{"other secret base64", base64.StdEncoding.EncodeToString(other), false},
		{"other secret PEM", string(pem.EncodeToMemory(&pem.Block{Type: "X", Bytes: other})), false},
		{"half the secret", hex.EncodeToString(secret[:16]), false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Find([]byte(tt.haystack), secret)
			if (len(got) > 0) != tt.want {
				t.Fatalf("Find = %q, want found=%v", got, tt.want)
			}
			for _, g := range got {
				if len(Find([]byte(g), secret)) > 0 {
					t.Fatalf("finding %q reveals the secret", g)
				}
			}
		})
	}
}

func TestFindNamesTheSecret(t *testing.T) {
	a, b := bytes.Repeat([]byte{0xA1}, 16), bytes.Repeat([]byte{0x5B}, 16)
	got := Find([]byte(hex.EncodeToString(b)), a, b)
	if len(got) != 1 || !strings.HasPrefix(got[0], "secret #1 as hex") {
		t.Fatalf("Find = %q, want one finding for secret #1 as hex", got)
	}
}

func TestEncodingsDistinctAndNonEmpty(t *testing.T) {
	secret := make([]byte, MinSecretLen)
	rand.Read(secret)
	encs := Encodings(secret)
	if len(encs) < 8 { // base64 and base64url coincide when no +/ occur
		t.Fatalf("only %d encodings", len(encs))
	}
	seen := map[string]bool{}
	for _, e := range encs {
		if e == "" || seen[e] {
			t.Fatalf("empty or duplicate encoding in %q", encs)
		}
		seen[e] = true
	}
}
