package event_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/event"
)

// tokenIssued is example 1 of docs/spec/audit-event.md, a typical
// token_issued event.
func tokenIssued() event.Event {
	return event.Event{
		ID:      "5f0c9a3e8b7d41c2a6e9f0d3b8c7a1e4",
		Time:    time.Date(2026, 3, 2, 8, 15, 42, 123456789, time.UTC),
		Class:   event.ClassToken,
		Type:    "token_issued",
		Actor:   "shop",
		Subject: "acc_7Hq2kV9xPz",
		Client:  "shop",
		IP:      "203.0.113.24",
		Fields: map[string]any{
			"grant":      "authorization_code",
			"kid":        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
			"access_jti": "Yc3mW0n1qZ8rT5uV7xK2aQ",
			"exp":        int64(1772439942),
			"audience":   "https://api.shop.example",
			"sid":        "s_9kXz2Lq",
		},
	}
}

const tokenIssuedV1 = `{"v":1,"id":"5f0c9a3e8b7d41c2a6e9f0d3b8c7a1e4","time":"2026-03-02T08:15:42.123456Z",` +
	`"class":"token","type":"token_issued","actor":"shop","subject":"acc_7Hq2kV9xPz","client":"shop",` +
	`"ip":"203.0.113.24","fields":{"access_jti":"Yc3mW0n1qZ8rT5uV7xK2aQ","audience":"https://api.shop.example",` +
	`"exp":1772439942,"grant":"authorization_code","kid":"NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs","sid":"s_9kXz2Lq"}}`

// loginFailed is example 2 of docs/spec/audit-event.md: a sign-in refused
// by the per-IP throttle, before any account was looked up, with its time
// given in Seoul time.
func loginFailed() event.Event {
	return event.Event{
		ID:    "c81d3e7a09f24b6e8d5a1f0b2c4e6a98",
		Time:  time.Date(2025, 11, 17, 16, 0, 3, 5_000, time.FixedZone("KST", 9*3600)),
		Class: event.ClassAuthn,
		Type:  "login_failed",
		IP:    "198.51.100.7",
		Fields: map[string]any{
			"reason":         "ip_rate",
			"login_id_hash":  "3f9a1c0d5e7b2a4c6d8e0f12",
			"retry_after_ms": int64(1500),
			"user_agent":     "Mozilla/5.0 (X11; Linux x86_64)",
		},
	}
}

const loginFailedV1 = `{"v":1,"id":"c81d3e7a09f24b6e8d5a1f0b2c4e6a98","time":"2025-11-17T07:00:03.000005Z",` +
	`"class":"authn","type":"login_failed","ip":"198.51.100.7","fields":{` +
	`"login_id_hash":"3f9a1c0d5e7b2a4c6d8e0f12","reason":"ip_rate","retry_after_ms":1500,` +
	`"user_agent":"Mozilla/5.0 (X11; Linux x86_64)"}}`

var t0 = time.Date(2026, 1, 15, 9, 30, 0, 0, time.UTC)

var golden = []struct {
	name string
	e    event.Event
	want string
}{
	{"spec example 1", tokenIssued(), tokenIssuedV1},
	{"spec example 2", loginFailed(), loginFailedV1},
	{
		"required members only",
		event.Event{ID: "x", Time: t0, Class: event.ClassAudit, Type: "pruned", Fields: map[string]any{}},
		`{"v":1,"id":"x","time":"2026-01-15T09:30:00.000000Z","class":"audit","type":"pruned"}`,
	},
	{
		"extreme times and names",
		event.Event{ID: "1", Time: time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC), Class: event.ClassAlert,
			Type: strings.Repeat("z", 64), Client: "c", Fields: map[string]any{strings.Repeat("a", 64): 0, "0": true}},
		`{"v":1,"id":"1","time":"9999-12-31T23:59:59.999999Z","class":"alert","type":"` + strings.Repeat("z", 64) +
			`","client":"c","fields":{"0":true,"` + strings.Repeat("a", 64) + `":0}}`,
	},
	{
		"first representable microsecond",
		event.Event{ID: "1", Time: time.Time{}.Add(time.Microsecond), Class: event.ClassKey, Type: "k"},
		`{"v":1,"id":"1","time":"0001-01-01T00:00:00.000001Z","class":"key","type":"k"}`,
	},
	{
		"escapes",
		event.Event{ID: "e", Time: t0, Class: event.ClassIncident, Type: "note",
			Actor:   "a\"b\\c/d",
			Subject: "l\nn\tt\r\b\f\x00\x01\x1f\x7f",
			Client:  "<script>&amp;",
			IP:      "::1",
			Fields:  map[string]any{"note": "é漢字😀\u2028\u2029\ufffd"}},
		`{"v":1,"id":"e","time":"2026-01-15T09:30:00.000000Z","class":"incident","type":"note",` +
			`"actor":"a\"b\\c/d","subject":"l\nn\tt\r\b\f\u0000\u0001\u001f` + "\x7f" + `",` +
			`"client":"<script>&amp;","ip":"::1","fields":{"note":"é漢字😀\u2028\u2029` + "\ufffd" + `"}}`,
	},
	{
		"integers",
		event.Event{ID: "i", Time: t0, Class: event.ClassAccess, Type: "read", Fields: map[string]any{
			"a": int(-event.MaxSafeInt), "b": int8(-128), "c": int16(32767), "d": int32(math.MinInt32),
			"e": int64(event.MaxSafeInt), "f": uint8(255), "g": uint16(65535), "h": uint32(math.MaxUint32),
			"i": uint(event.MaxSafeInt), "j": uint64(0), "k": -1,
		}},
		`{"v":1,"id":"i","time":"2026-01-15T09:30:00.000000Z","class":"access","type":"read","fields":{` +
			`"a":-9007199254740991,"b":-128,"c":32767,"d":-2147483648,"e":9007199254740991,"f":255,` +
			`"g":65535,"h":4294967295,"i":9007199254740991,"j":0,"k":-1}}`,
	},
}

func TestMarshalGolden(t *testing.T) {
	for _, tc := range golden {
		t.Run(tc.name, func(t *testing.T) {
			got, err := event.Marshal(tc.e)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if string(got) != tc.want {
				t.Fatalf("Marshal =\n%s\nwant\n%s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Fatal("the encoding is not valid JSON")
			}
			prefix := []byte("prefix")
			app, err := event.Append(prefix, tc.e)
			if err != nil || string(app) != "prefix"+tc.want {
				t.Fatalf("Append(prefix) = %q, %v", app, err)
			}
		})
	}
}

// TestLeafHash pins the RFC 6962 leaf hashes and sizes of the examples in
// docs/spec/audit-event.md.
func TestLeafHash(t *testing.T) {
	for _, tc := range []struct {
		e    event.Event
		size int
		hash string
	}{
		{tokenIssued(), 403, "6ca7a57e4efd2ba76c1683519b9848bbb69bd348d9c571ea6bc479d233c14ba4"},
		{loginFailed(), 284, "2897e2d4b37b3c9bb4b65138f4a28921c00af166699823a478b6a41e97b853a4"},
	} {
		b, err := event.Marshal(tc.e)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(append([]byte{0x00}, b...))
		if got := hex.EncodeToString(h[:]); got != tc.hash || len(b) != tc.size {
			t.Errorf("%s: %d bytes, leaf hash %s; want %d bytes, %s", tc.e.Type, len(b), got, tc.size, tc.hash)
		}
	}
}

// TestSpecExamples checks that docs/spec/audit-event.md shows the examples
// and leaf hashes this package produces.
func TestSpecExamples(t *testing.T) {
	spec, err := os.ReadFile("../../docs/spec/audit-event.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\n" + tokenIssuedV1 + "\n",
		"\n" + loginFailedV1 + "\n",
		"403 bytes, leaf hash\n`6ca7a57e4efd2ba76c1683519b9848bbb69bd348d9c571ea6bc479d233c14ba4`",
		"284 bytes, leaf hash\n`2897e2d4b37b3c9bb4b65138f4a28921c00af166699823a478b6a41e97b853a4`",
	} {
		if !bytes.Contains(spec, []byte(want)) {
			t.Errorf("the spec does not contain %q", want)
		}
	}
}

type named string

func TestMarshalRefusals(t *testing.T) {
	ok := func(f func(*event.Event)) event.Event {
		e := event.Event{ID: "x", Time: t0, Class: event.ClassToken, Type: "t"}
		f(&e)
		return e
	}
	field := func(k string, v any) event.Event {
		return ok(func(e *event.Event) { e.Fields = map[string]any{"fine": 1, k: v} })
	}
	tests := []struct {
		name   string
		e      event.Event
		member string // InvalidError.Member, "" for ErrTooLarge
		key    string
	}{
		{"no id", ok(func(e *event.Event) { e.ID = "" }), "id", ""},
		{"id not UTF-8", ok(func(e *event.Event) { e.ID = "\xff" }), "id", ""},
		{"zero time", ok(func(e *event.Event) { e.Time = time.Time{} }), "time", ""},
		{"zero time after truncation", ok(func(e *event.Event) { e.Time = time.Time{}.Add(999) }), "time", ""},
		{"year 0", ok(func(e *event.Event) { e.Time = time.Date(0, 12, 31, 23, 0, 0, 0, time.UTC) }), "time", ""},
		{"year 10000", ok(func(e *event.Event) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), "time", ""},
		{"year 10000 in UTC", ok(func(e *event.Event) {
			e.Time = time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("", -3600))
		}), "time", ""},
		{"no class", ok(func(e *event.Event) { e.Class = "" }), "class", ""},
		{"unknown class", ok(func(e *event.Event) { e.Class = "Token" }), "class", ""},
		{"no type", ok(func(e *event.Event) { e.Type = "" }), "type", ""},
		{"type upper case", ok(func(e *event.Event) { e.Type = "Login" }), "type", ""},
		{"type with dash", ok(func(e *event.Event) { e.Type = "login-failed" }), "type", ""},
		{"type too long", ok(func(e *event.Event) { e.Type = strings.Repeat("a", 65) }), "type", ""},
		{"actor not UTF-8", ok(func(e *event.Event) { e.Actor = "a\xc3" }), "actor", ""},
		{"subject not UTF-8", ok(func(e *event.Event) { e.Subject = "\xed\xa0\x80" }), "subject", ""}, // a surrogate
		{"client not UTF-8", ok(func(e *event.Event) { e.Client = "\xc0\xaf" }), "client", ""},        // overlong
		{"ip not UTF-8", ok(func(e *event.Event) { e.IP = "1.2.3.\x80" }), "ip", ""},
		{"empty key", field("", 1), "fields", ""}, // the message says field ""
		{"upper-case key", field("Kid", "k"), "fields", "Kid"},
		{"dotted key", field("a.b", "k"), "fields", "a.b"},
		{"long key", field(strings.Repeat("k", 65), "k"), "fields", strings.Repeat("k", 65)},
		{"string not UTF-8", field("s", "\xff"), "fields", "s"},
		{"float64", field("f", 1.0), "fields", "f"},
		{"float32", field("f", float32(2)), "fields", "f"},
		{"nil", field("n", nil), "fields", "n"},
		{"map", field("m", map[string]any{"a": 1}), "fields", "m"},
		{"slice", field("l", []any{1}), "fields", "l"},
		{"string slice", field("l", []string{"a"}), "fields", "l"},
		{"byte slice", field("l", []byte("a")), "fields", "l"},
		{"struct", field("s", struct{}{}), "fields", "s"},
		{"time", field("t", t0), "fields", "t"},
		{"duration", field("d", time.Second), "fields", "d"},
		{"json.Number", field("n", json.Number("1")), "fields", "n"},
		{"named string", field("n", named("x")), "fields", "n"},
		{"uintptr", field("p", uintptr(1)), "fields", "p"},
		{"pointer", field("p", new(int)), "fields", "p"},
		{"func", field("f", func() {}), "fields", "f"},
		{"int64 2^53", field("i", int64(1<<53)), "fields", "i"},
		{"int64 -2^53", field("i", int64(-1<<53)), "fields", "i"},
		{"int 2^53", field("i", 1<<53), "fields", "i"},
		{"int min", field("i", math.MinInt), "fields", "i"},
		{"uint64 2^53", field("i", uint64(1<<53)), "fields", "i"},
		{"uint max", field("i", uint(math.MaxUint)), "fields", "i"},
		{"too large, raw", ok(func(e *event.Event) { e.Actor = strings.Repeat("a", event.MaxSize) }), "", ""},
		{"too large, escaped", ok(func(e *event.Event) { e.Actor = strings.Repeat("\x01", event.MaxSize/6+1) }), "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("keep")
			out, err := event.Append(dst, tc.e)
			if string(out) != "keep" {
				t.Errorf("Append on error returned %q, want dst unchanged", out)
			}
			b, err2 := event.Marshal(tc.e)
			if b != nil || (err == nil) != (err2 == nil) {
				t.Errorf("Marshal = %q, %v; Append's error %v", b, err2, err)
			}
			if tc.member == "" {
				if !errors.Is(err, event.ErrTooLarge) {
					t.Fatalf("err = %v, want ErrTooLarge", err)
				}
				return
			}
			if !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			ie, ok := errors.AsType[*event.InvalidError](err)
			if !ok || ie.Member != tc.member || ie.Key != tc.key {
				t.Fatalf("err = %#v, want member %q key %q", err, tc.member, tc.key)
			}
			if tc.member == "fields" && !strings.Contains(err.Error(), strconv.Quote(tc.key)) {
				t.Fatalf("error %q does not name the key", err)
			}
		})
	}
}

// TestMarshalSizeLimit checks that an encoding of exactly MaxSize bytes is
// accepted and one byte more refused, whether the padding is plain or
// escaped.
func TestMarshalSizeLimit(t *testing.T) {
	base := event.Event{ID: "x", Time: t0, Class: event.ClassToken, Type: "t", Actor: "a"}
	b, err := event.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	room := event.MaxSize - len(b) // bytes to add to the one-byte actor
	for _, tc := range []struct {
		name  string
		actor string
		ok    bool
	}{
		{"plain, at the limit", "a" + strings.Repeat("b", room), true},
		{"plain, one over", "a" + strings.Repeat("b", room+1), false},
		{"escaped, at the limit", "a" + strings.Repeat("\x01", room/6) + strings.Repeat("c", room%6), true},
		{"escaped, one over", "a" + strings.Repeat("\x01", room/6) + strings.Repeat("c", room%6+1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := base
			e.Actor = tc.actor
			b, err := event.Marshal(e)
			if tc.ok {
				if err != nil || len(b) != event.MaxSize {
					t.Fatalf("Marshal: %d bytes, %v; want exactly %d", len(b), err, event.MaxSize)
				}
				if _, err := event.Parse(b); err != nil {
					t.Fatalf("Parse of a maximal encoding: %v", err)
				}
				return
			}
			if !errors.Is(err, event.ErrTooLarge) {
				t.Fatalf("Marshal: %v, want ErrTooLarge", err)
			}
		})
	}
}

// TestMarshalSizeLimitFields checks the limit with fields, where the early
// size check counts keys, booleans and integers.
func TestMarshalSizeLimitFields(t *testing.T) {
	e := event.Event{ID: "x", Time: t0, Class: event.ClassToken, Type: "t", IP: "::1",
		Fields: map[string]any{"a": false, "b": 0, "c": true, "d": ""}}
	b, err := event.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	e.Fields["d"] = strings.Repeat("d", event.MaxSize-len(b))
	if b, err := event.Marshal(e); err != nil || len(b) != event.MaxSize {
		t.Fatalf("Marshal: %d bytes, %v; want exactly %d", len(b), err, event.MaxSize)
	}
	e.Fields["d"] = e.Fields["d"].(string) + "d"
	if _, err := event.Marshal(e); !errors.Is(err, event.ErrTooLarge) {
		t.Fatalf("Marshal of %d bytes: %v, want ErrTooLarge", event.MaxSize+1, err)
	}
}

// TestStringEscapes compares the string encoding with encoding/json's
// (without HTML escaping), which for valid UTF-8 follows the same rules.
func TestStringEscapes(t *testing.T) {
	var runes []rune
	for r := rune(0); r < 0x100; r++ {
		runes = append(runes, r)
	}
	runes = append(runes, 0x2027, 0x2028, 0x2029, 0x202a, 0xfeff, 0xfffd, 0x10000, 0x1f600, 0x10ffff)
	for _, r := range runes {
		s := "x" + string(r) + "y"
		got, err := event.Marshal(event.Event{ID: s, Time: t0, Class: event.ClassToken, Type: "t"})
		if err != nil {
			t.Fatalf("U+%04X: %v", r, err)
		}
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		wantID := `"id":` + strings.TrimSuffix(want.String(), "\n") + `,`
		if !bytes.Contains(got, []byte(wantID)) {
			t.Errorf("U+%04X: encoding %q does not contain %q", r, got, wantID)
		}
	}
}

func TestMarshalAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations are not counted under the race detector")
	}
	e := tokenIssued()
	if n := testing.AllocsPerRun(100, func() { event.Marshal(e) }); n > 1 {
		t.Errorf("Marshal makes %v allocations, want 1", n)
	}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { event.Append(buf[:0], e) }); n > 0 {
		t.Errorf("Append to a large enough buffer makes %v allocations, want 0", n)
	}
}

// tokenRevoked is a typical small token event, about 250 bytes encoded.
func tokenRevoked() event.Event {
	return event.Event{
		ID:      "9a1c4e7f2b3d4a5c8e6f0a1b2c3d4e5f",
		Time:    time.Date(2026, 3, 2, 8, 15, 42, 123456789, time.UTC),
		Class:   event.ClassToken,
		Type:    "token_revoked",
		Actor:   "shop",
		Subject: "acc_7Hq2kV9xPz",
		Client:  "shop",
		IP:      "203.0.113.24",
		Fields:  map[string]any{"jti": "Yc3mW0n1qZ8rT5uV7xK2aQ", "kind": "access", "kid": "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"},
	}
}

func BenchmarkMarshal(b *testing.B) {
	for _, bc := range []struct {
		name string
		e    event.Event
	}{{"token_revoked", tokenRevoked()}, {"token_issued", tokenIssued()}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				out, err := event.Marshal(bc.e)
				if err != nil {
					b.Fatal(err)
				}
				n = len(out)
			}
			b.SetBytes(int64(n))
		})
	}
}

func BenchmarkParse(b *testing.B) {
	in := []byte(tokenIssuedV1)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := event.Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAppendList checks that fields given as a list encode exactly as the
// same fields given as a map, and that a list out of order is refused.
func TestAppendList(t *testing.T) {
	e := tokenIssued()
	e.Fields = map[string]any{"a_bool": false, "count": int64(42), "empty": "", "neg": int64(-MaxSafe), "text": "é\u2028\"x\"", "zz": true}
	list := []event.Field{event.Bool("a_bool", false), event.Int("count", 42), event.String("empty", ""), event.Int("neg", -MaxSafe),
		event.String("text", "é\u2028\"x\""), event.Bool("zz", true)}
	want, err := event.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	noFields := e
	noFields.Fields = nil
	got, err := event.AppendList(nil, noFields, list...)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("AppendList = %s, %v\nwant %s", got, err, want)
	}
	for _, bad := range [][]event.Field{
		{event.Int("b", 1), event.Int("a", 2)},
		{event.Int("a", 1), event.Int("a", 2)},
		{event.String("a", "\xff")},
		{event.Int("a", MaxSafe+1)},
		{event.String("A", "x")},
	} {
		if _, err := event.AppendList(nil, noFields, bad...); !errors.Is(err, event.ErrInvalid) {
			t.Errorf("AppendList(%v) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := event.AppendList(nil, e, list...); !errors.Is(err, event.ErrInvalid) {
		t.Errorf("AppendList with a field map too = %v, want ErrInvalid", err)
	}
}

// MaxSafe is event.MaxSafeInt as an int64.
const MaxSafe = int64(event.MaxSafeInt)

// TestMarshalFirstProblem checks which of several problems Marshal reports:
// always the same one, the first in the encoding's order, whatever the
// order a map of fields is walked in.
func TestMarshalFirstProblem(t *testing.T) {
	base := tokenIssued()
	for _, c := range []struct {
		name   string
		edit   func(e *event.Event)
		member string
		key    string
		large  bool
	}{
		{"empty id, float field", func(e *event.Event) { e.ID = ""; e.Fields = map[string]any{"a": 1.5} }, "id", "", false},
		{"bad key before a float", func(e *event.Event) { e.Fields = map[string]any{"A": "x", "b": 1.5} }, "fields", "A", false},
		{"too large, float field", func(e *event.Event) {
			e.Fields = map[string]any{"a": strings.Repeat("x", event.MaxSize), "b": 1.5}
		}, "", "", true},
		{"four bad values", func(e *event.Event) {
			e.Fields = map[string]any{"a": 1.5, "b": nil, "c": []any{}, "d": uint64(1 << 60)}
		}, "fields", "a", false},
	} {
		e := base
		c.edit(&e)
		var first error
		for range 50 {
			_, err := event.Marshal(e)
			if first == nil {
				first = err
			}
			if err == nil || err.Error() != first.Error() {
				t.Fatalf("%s: %v, then %v", c.name, first, err)
			}
		}
		if c.large {
			if !errors.Is(first, event.ErrTooLarge) {
				t.Errorf("%s: %v, want ErrTooLarge", c.name, first)
			}
			continue
		}
		var ie *event.InvalidError
		if !errors.As(first, &ie) || ie.Member != c.member || ie.Key != c.key {
			t.Errorf("%s: %v, want a problem with %s %q", c.name, first, c.member, c.key)
		}
	}
}
