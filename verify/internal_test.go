package verify

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLRU(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newLRU[string, int](2)
	c.put("a", 1, now.Add(time.Minute))
	c.put("b", 2, now.Add(time.Minute))
	if _, ok := c.get("a", now); !ok { // a is now most recently used
		t.Fatal("a missing")
	}
	c.put("c", 3, now.Add(time.Minute)) // evicts b
	if _, ok := c.get("b", now); ok {
		t.Fatal("b not evicted")
	}
	if v, ok := c.get("a", now); !ok || v != 1 {
		t.Fatal("a evicted instead of b")
	}
	if c.len() != 2 {
		t.Fatalf("len = %d", c.len())
	}
	if _, ok := c.get("c", now.Add(time.Minute)); ok {
		t.Fatal("expired entry returned")
	}
	if c.len() != 1 {
		t.Fatalf("expired entry kept: len = %d", c.len())
	}
	c.put("a", 9, now.Add(time.Hour))
	if v, _ := c.get("a", now.Add(30*time.Minute)); v != 9 {
		t.Fatalf("update lost: %d", v)
	}
	c.remove("a")
	if c.len() != 0 {
		t.Fatal("remove")
	}
	for i := range 100 {
		c.put(strings.Repeat("k", i), i, now.Add(time.Minute))
	}
	if c.len() != 2 {
		t.Fatalf("bound broken: len = %d", c.len())
	}
}

func TestStrictObject(t *testing.T) {
	cases := []struct {
		in   string
		want error // nil means accepted
	}{
		{`{}`, nil},
		{`{"a":1,"b":[1,{"c":2}],"d":{"a":1}}`, nil},
		{`{ "a" : 1 }`, nil},
		{"{\"a\":\"\u00e9\"}", nil},
		{`{"a":1,"a":1}`, errJSONDuplicate},
		{`{"a":1,"\u0061":2}`, errJSONDuplicate},
		{`{"x":{"a":1,"a":2}}`, errJSONDuplicate},
		{`{"x":[{"a":1,"a":2}]}`, errJSONDuplicate},
		{`{"a":1}x`, errJSONNotObject},
		{`{"a":1} `, errJSONNotObject},
		{` {"a":1}`, errJSONNotObject},
		{"\ufeff{\"a\":1}", errJSONNotObject},
		{`{"a":1}{}`, errJSONTrailing},
		{`{"a":1}}`, errJSONTrailing},
		{"{\"a\":\"\xff\"}", errJSONUTF8},
		{`[]`, errJSONNotObject},
		{`{"a":` + strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth) + `}`, errJSONDepth},
		{`{"a":` + strings.Repeat("[", maxJSONDepth-1) + strings.Repeat("]", maxJSONDepth-1) + `}`, nil},
		{`{"a":1,}`, errAny},
		{`{"a":01}`, errAny},
		{`{"a":NaN}`, errAny},
		{`{'a':1}`, errAny},
	}
	for _, tc := range cases {
		_, err := strictObject([]byte(tc.in))
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.want == errAny && err == nil:
			t.Errorf("%q accepted", tc.in)
		case tc.want != nil && tc.want != errAny && !errors.Is(err, tc.want):
			t.Errorf("%q: err = %v, want %v", tc.in, err, tc.want)
		}
	}
}

var errAny = errors.New("any error")

func TestJSONInt(t *testing.T) {
	for in, want := range map[string]bool{
		"0": true, "1772366400": true, "-5": true, "9223372036854775807": true,
		"9223372036854775808": false, "1.0": false, "1e9": false, `"1"`: false, "-": false, "": false, "true": false,
	} {
		if _, ok := jsonInt(json.RawMessage(in)); ok != want {
			t.Errorf("jsonInt(%q) ok = %v, want %v", in, ok, want)
		}
	}
}

// FuzzParseHeader: parseHeader never panics, returns a Reason on every
// refusal, and accepts only headers of exactly alg, typ and kid that
// re-encode to an equivalent header (round trip).
func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{
		`{"alg":"EdDSA","typ":"at+jwt","kid":"abc"}`,
		`{"alg":"ES256","typ":"application/AT+JWT","kid":"k"}`,
		`{"alg":"none","alg":"EdDSA","typ":"at+jwt","kid":"abc"}`,
		`{"alg":"EdDSA","typ":"at+jwt","kid":"abc","crit":["exp"]}`,
		`{"alg":"EdDSA","typ":"at+jwt","kid":"abc","jku":"x"}`,
		"\ufeff{}", `{"alg":"EdDSA","typ":"at+jwt","kid":"a\u0062c"}`, `[]`, `{"a":[[[[[[[[[[]]]]]]]]]]}`,
	} {
		f.Add([]byte(s))
	}
	algs := []string{AlgEdDSA, AlgES256}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeader(b, algs)
		if err != nil {
			e, ok := errors.AsType[*Error](err)
			if !ok || e.Reason == "" {
				t.Fatalf("refusal without a reason: %v", err)
			}
			return
		}
		if h.alg != AlgEdDSA && h.alg != AlgES256 || !validKeyID(h.kid) ||
			!strings.EqualFold(h.typ, "at+jwt") && !strings.EqualFold(h.typ, "application/at+jwt") {
			t.Fatalf("accepted %+v", h)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("accepted invalid JSON %q: %v", b, err)
		}
		if len(m) != 3 || m["alg"] != h.alg || m["typ"] != h.typ || m["kid"] != h.kid {
			t.Fatalf("accepted %q as %+v: round trip differs (%v)", b, h, m)
		}
		again, _ := json.Marshal(map[string]string{"alg": h.alg, "typ": h.typ, "kid": h.kid})
		if h2, err := parseHeader(again, algs); err != nil || h2 != h {
			t.Fatalf("re-encoded header %s: %+v, %v", again, h2, err)
		}
	})
}

// FuzzSplitCompact: splitCompact never panics, and what it accepts
// re-encodes to exactly the input (canonical encoding only).
func FuzzSplitCompact(f *testing.F) {
	f.Add("eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg")
	f.Add("a.b.c")
	f.Add("AA==.AA.AA")
	f.Add("AB.AA.AA")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := splitCompact(s)
		if err != nil {
			return
		}
		again := b64.EncodeToString(c.header) + "." + b64.EncodeToString(c.payload) + "." + b64.EncodeToString(c.signature)
		if again != s {
			t.Fatalf("accepted %q, which re-encodes to %q", s, again)
		}
		if c.signingInput != s[:strings.LastIndexByte(s, '.')] {
			t.Fatalf("signing input %q", c.signingInput)
		}
	})
}

type mapKeySet map[string]Key

func (m mapKeySet) LookupKey(_ context.Context, kid string) (Key, error) {
	if k, ok := m[kid]; ok {
		return k, nil
	}
	return Key{}, ErrUnknownKey
}

// TestCacheHit shows that a second Verify of a token is served from the
// cache (no parsing, no signature check), and that turning the cache off
// turns that off.
func TestCacheHit(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	now := time.Unix(1_800_000_000, 0)
	keys := mapKeySet{"k1": {ID: "k1", Algorithm: AlgEdDSA, Public: priv.Public()}}
	input := b64.EncodeToString([]byte(`{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}`)) + "." +
		b64.EncodeToString(fmt.Appendf(nil, `{"iss":"https://i.test","sub":"s","aud":"a","exp":%d,"iat":%d,"jti":"j","client_id":"c"}`,
			now.Unix()+600, now.Unix()))
	token := input + "." + b64.EncodeToString(ed25519.Sign(priv, []byte(input)))
	for _, size := range []int{0, -1} {
		v, err := New(Config{Issuer: "https://i.test", Audience: "a", Keys: keys, AllowNoReceipts: true,
			CacheSize: size, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), token); err != nil {
			t.Fatal(err)
		}
		if size < 0 {
			if v.cache != nil {
				t.Fatal("cache not disabled")
			}
			continue
		}
		hit, ok := v.cache.get(token, now)
		if !ok {
			t.Fatal("token not cached")
		}
		hit.claims.Subject = "from-cache"
		c, err := v.Verify(context.Background(), token)
		if err != nil || c.Subject != "from-cache" {
			t.Fatalf("second Verify not served from cache: %+v, %v", c, err)
		}
	}
}
