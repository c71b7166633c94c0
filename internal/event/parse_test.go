package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/event"
)

func TestParseGolden(t *testing.T) {
	for _, tc := range golden {
		t.Run(tc.name, func(t *testing.T) {
			got, err := event.Parse([]byte(tc.want))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := normalize(tc.e)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Parse =\n%#v\nwant\n%#v", got, want)
			}
		})
	}
}

// normalize returns e as Parse returns it: time in UTC truncated to the
// microsecond, integers as int64, empty Fields as nil.
func normalize(e event.Event) event.Event {
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	if len(e.Fields) == 0 {
		e.Fields = nil
		return e
	}
	f := make(map[string]any, len(e.Fields))
	for k, v := range e.Fields {
		switch v := v.(type) {
		case string, bool:
			f[k] = v
		default:
			n, err := strconv.ParseInt(fmtInt(v), 10, 64)
			if err != nil {
				panic(err)
			}
			f[k] = n
		}
	}
	e.Fields = f
	return e
}

func fmtInt(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

const base = `{"v":1,"id":"x","time":"2026-01-15T09:30:00.123456Z","class":"token","type":"t"`

// withFields is base with a fields member whose body is f.
func withFields(f string) string { return base + `,"fields":{` + f + `}}` }

// withType is base's type replaced by the raw JSON value s.
func withType(s string) string { return strings.Replace(base, `"type":"t"`, `"type":`+s, 1) + `}` }

func TestParseRefusals(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		target error  // ErrMalformed, ErrVersion, ErrTooLarge or ErrInvalid
		msg    string // a part of the ParseError's Msg
	}{
		{"empty", ``, event.ErrMalformed, "does not begin"},
		{"not an object", `[1]`, event.ErrMalformed, "does not begin"},
		{"leading space", ` ` + base + `}`, event.ErrMalformed, "does not begin"},
		{"space after brace", `{ "v":1}`, event.ErrMalformed, "does not begin"},
		{"v not first", `{"id":"x","v":1}`, event.ErrMalformed, "does not begin"},
		{"v string", `{"v":"1","id":"x"}`, event.ErrMalformed, "v is not an integer"},
		{"v float", strings.Replace(base, `"v":1`, `"v":1.0`, 1) + `}`, event.ErrMalformed, "v is not an integer"},
		{"v exponent", strings.Replace(base, `"v":1`, `"v":1e0`, 1) + `}`, event.ErrMalformed, "v is not an integer"},
		{"v leading zero", strings.Replace(base, `"v":1`, `"v":01`, 1) + `}`, event.ErrMalformed, "v is not an integer"},
		{"v negative", `{"v":-1}`, event.ErrMalformed, "v is not an integer"},
		{"v missing", `{"v":}`, event.ErrMalformed, "v is not an integer"},
		{"v 2", `{"v":2,"anything":["at all"]}`, event.ErrVersion, ""},
		{"v 0", `{"v":0}`, event.ErrVersion, ""},
		{"v 10", strings.Replace(base, `"v":1`, `"v":10`, 1) + `}`, event.ErrVersion, ""},
		{"v huge", `{"v":123456789012345678901234567890}`, event.ErrVersion, ""},
		{"v only", `{"v":1}`, event.ErrMalformed, `"id" is missing`},
		{"no time", `{"v":1,"id":"x","class":"token","type":"t"}`, event.ErrMalformed, `"time" is missing`},
		{"no class", `{"v":1,"id":"x","time":"2026-01-15T09:30:00.123456Z","type":"t"}`, event.ErrMalformed, `"class" is missing`},
		{"no type", `{"v":1,"id":"x","time":"2026-01-15T09:30:00.123456Z","class":"token"}`, event.ErrMalformed, `"type" is missing`},
		{"unterminated", base, event.ErrMalformed, "end of input"},
		{"trailing newline", base + "}\n", event.ErrMalformed, "trailing"},
		{"two objects", base + "}" + base + "}", event.ErrMalformed, "trailing"},
		{"unknown member", base + `,"name":"Kim"}`, event.ErrMalformed, `unknown member "name"`},
		{"upper-case member", base + `,"Actor":"a"}`, event.ErrMalformed, `unknown member "Actor"`},
		{"escaped member name", base + `,"\u0061ctor":"a"}`, event.ErrMalformed, "escape"},
		{"duplicate member", base + `,"type":"t"}`, event.ErrMalformed, `duplicate member "type"`},
		{"duplicate id", `{"v":1,"id":"x","id":"x"}`, event.ErrMalformed, `duplicate member "id"`},
		{"out of order", `{"v":1,"id":"x","time":"2026-01-15T09:30:00.123456Z","type":"t","class":"token"}`, event.ErrMalformed, `"class" out of order`},
		{"actor after ip", base + `,"ip":"::1","actor":"a"}`, event.ErrMalformed, `"actor" out of order`},
		{"space after colon", strings.Replace(base, `"id":"x"`, `"id": "x"`, 1) + `}`, event.ErrMalformed, "want a string"},
		{"space before comma", base + ` }`, event.ErrMalformed, `want "," or "}"`},
		{"empty optional member", base + `,"actor":""}`, event.ErrMalformed, "not in canonical form"},
		{"id number", `{"v":1,"id":1}`, event.ErrMalformed, "want a string"},
		{"type null", withType(`null`), event.ErrMalformed, "want a string"},
		{"type nested", withType(`["t"]`), event.ErrMalformed, "want a string"},
		{"fields null", base + `,"fields":null}`, event.ErrMalformed, `want '{'`},
		{"fields array", base + `,"fields":[]}`, event.ErrMalformed, `want '{'`},
		{"empty fields", base + `,"fields":{}}`, event.ErrMalformed, "empty fields"},
		{"null value", withFields(`"a":null`), event.ErrMalformed, "null"},
		{"object value", withFields(`"a":{}`), event.ErrMalformed, "nested"},
		{"array value", withFields(`"a":[1]`), event.ErrMalformed, "nested"},
		{"float", withFields(`"a":1.5`), event.ErrMalformed, "floats"},
		{"integral float", withFields(`"a":1.0`), event.ErrMalformed, "floats"},
		{"exponent", withFields(`"a":1e3`), event.ErrMalformed, "exponents"},
		{"upper exponent", withFields(`"a":1E3`), event.ErrMalformed, "exponents"},
		{"leading zero", withFields(`"a":007`), event.ErrMalformed, "leading zeros"},
		{"negative leading zero", withFields(`"a":-01`), event.ErrMalformed, "leading zeros"},
		{"negative zero", withFields(`"a":-0`), event.ErrMalformed, "negative zero"},
		{"plus sign", withFields(`"a":+1`), event.ErrMalformed, "a string, boolean or integer"},
		{"lone minus", withFields(`"a":-`), event.ErrMalformed, "a digit"},
		{"2^53", withFields(`"a":9007199254740992`), event.ErrMalformed, "outside"},
		{"-2^53", withFields(`"a":-9007199254740992`), event.ErrMalformed, "outside"},
		{"2^64", withFields(`"a":18446744073709551616`), event.ErrMalformed, "outside"},
		{"hex", withFields(`"a":0x10`), event.ErrMalformed, `want "," or "}"`},
		{"bad literal", withFields(`"a":tru`), event.ErrMalformed, "invalid literal"},
		{"upper-case literal", withFields(`"a":True`), event.ErrMalformed, "a string, boolean or integer"},
		{"duplicate field", withFields(`"a":1,"a":1`), event.ErrMalformed, `duplicate field "a"`},
		{"fields unsorted", withFields(`"b":1,"a":2`), event.ErrMalformed, "not in canonical form"},
		{"trailing comma", withFields(`"a":1,`), event.ErrMalformed, "want a string"},
		{"key not a name", withFields(`"A":1`), event.ErrInvalid, "cannot be encoded"},
		{"empty key", withFields(`"":1`), event.ErrInvalid, "cannot be encoded"},
		{"invalid UTF-8", withType("\"t\xff\""), event.ErrMalformed, "invalid UTF-8"},
		{"truncated UTF-8", withFields("\"a\":\"\xe6\xbc\""), event.ErrMalformed, "invalid UTF-8"},
		{"UTF-8 surrogate", withFields("\"a\":\"\xed\xa0\x80\""), event.ErrMalformed, "invalid UTF-8"},
		{"overlong UTF-8", withFields("\"a\":\"\xc0\xaf\""), event.ErrMalformed, "invalid UTF-8"},
		{"raw newline", withFields("\"a\":\"x\ny\""), event.ErrMalformed, "must be escaped"},
		{"raw NUL", withFields("\"a\":\"\x00\""), event.ErrMalformed, "must be escaped"},
		{"raw U+2028", withFields("\"a\":\"\u2028\""), event.ErrMalformed, "must be escaped"},
		{"raw U+2029", withFields("\"a\":\"\u2029\""), event.ErrMalformed, "must be escaped"},
		{`escaped solidus`, withFields(`"a":"\/"`), event.ErrMalformed, "escape"},
		{`escaped letter`, withFields(`"a":"\u0041"`), event.ErrMalformed, "escape"},
		{`long form of \n`, withFields(`"a":"\u000a"`), event.ErrMalformed, "escape"},
		{`upper-case hex`, withFields(`"a":"\u001F"`), event.ErrMalformed, "escape"},
		{`escaped DEL`, withFields(`"a":"\u007f"`), event.ErrMalformed, "escape"},
		{`escaped non-ASCII`, withFields(`"a":"\u00e9"`), event.ErrMalformed, "escape"},
		{`surrogate pair`, withFields(`"a":"\ud83d\ude00"`), event.ErrMalformed, "escape"},
		{`unknown escape`, withFields(`"a":"\x41"`), event.ErrMalformed, "escape"},
		{`short \u`, withFields(`"a":"\u00"`), event.ErrMalformed, "escape"},
		{`escape at end`, base[:len(base)-2] + `\`, event.ErrMalformed, "escape"},
		{"unterminated string", `{"v":1,"id":"x`, event.ErrMalformed, "unterminated"},
		{"time without fraction", strings.Replace(base, ".123456Z", "Z", 1) + `}`, event.ErrMalformed, "not of the form"},
		{"time in milliseconds", strings.Replace(base, ".123456Z", ".123Z", 1) + `}`, event.ErrMalformed, "not of the form"},
		{"time in nanoseconds", strings.Replace(base, ".123456Z", ".123456789Z", 1) + `}`, event.ErrMalformed, "not of the form"},
		{"time with offset", strings.Replace(base, ".123456Z", ".12345+00:00", 1) + `}`, event.ErrMalformed, "not of the form"},
		{"time lower-case", strings.Replace(base, "T09", "t09", 1) + `}`, event.ErrMalformed, "not of the form"},
		{"time with space", strings.Replace(base, "T09", " 09", 1) + `}`, event.ErrMalformed, "not of the form"},
		{"time signed", strings.Replace(base, "2026-01-15", "+026-01-15", 1) + `}`, event.ErrMalformed, "not of the form"},
		{"30 February", strings.Replace(base, "2026-01-15", "2026-02-30", 1) + `}`, event.ErrMalformed, "does not exist"},
		{"hour 24", strings.Replace(base, "T09:30:00", "T24:00:00", 1) + `}`, event.ErrMalformed, "does not exist"},
		{"leap second", strings.Replace(base, "T09:30:00", "T23:59:60", 1) + `}`, event.ErrMalformed, "does not exist"},
		{"month 0", strings.Replace(base, "2026-01-15", "2026-00-15", 1) + `}`, event.ErrMalformed, "does not exist"},
		{"year 0", strings.Replace(base, "2026-01-15", "0000-12-31", 1) + `}`, event.ErrInvalid, "cannot be encoded"},
		{"zero time", strings.Replace(base, "2026-01-15T09:30:00.123456", "0001-01-01T00:00:00.000000", 1) + `}`, event.ErrInvalid, "cannot be encoded"},
		{"unknown class", strings.Replace(base, `"token"`, `"session"`, 1) + `}`, event.ErrInvalid, "cannot be encoded"},
		{"bad type", withType(`"Token-Issued"`), event.ErrInvalid, "cannot be encoded"},
		{"empty id", strings.Replace(base, `"id":"x"`, `"id":""`, 1) + `}`, event.ErrInvalid, "cannot be encoded"},
		{"too large", withFields(`"a":"` + strings.Repeat("a", event.MaxSize) + `"`), event.ErrTooLarge, "bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := event.Parse([]byte(tc.in))
			if !errors.Is(err, tc.target) {
				t.Fatalf("Parse(%q) error = %v, want %v", tc.in, err, tc.target)
			}
			if !reflect.DeepEqual(e, event.Event{}) {
				t.Errorf("Parse returned %+v with its error", e)
			}
			if tc.target == event.ErrVersion {
				if errors.Is(err, event.ErrMalformed) {
					t.Errorf("a version error matches ErrMalformed: %v", err)
				}
				return
			}
			pe, ok := errors.AsType[*event.ParseError](err)
			if !ok || !errors.Is(err, event.ErrMalformed) {
				t.Fatalf("Parse error %v is not a *ParseError matching ErrMalformed", err)
			}
			if !strings.Contains(pe.Msg, tc.msg) {
				t.Errorf("Parse error %q, want one saying %q", err, tc.msg)
			}
			if pe.Offset < 0 || pe.Offset > len(tc.in) {
				t.Errorf("Offset %d outside the input", pe.Offset)
			}
		})
	}
}

// TestParseRefusesEveryEdit checks that removing or doubling any single
// byte of a valid encoding is refused: each yields something that is not a
// canonical encoding.
func TestParseRefusesEveryEdit(t *testing.T) {
	for _, tc := range golden {
		in := []byte(tc.want)
		for i := range in {
			del := append(append([]byte{}, in[:i]...), in[i+1:]...)
			dup := append(append([]byte{}, in[:i+1]...), in[i:]...)
			for _, b := range [][]byte{del, dup} {
				if e, err := event.Parse(b); err == nil {
					// Only a change inside a string value can survive, and
					// then the event must differ.
					if reflect.DeepEqual(e, normalize(tc.e)) {
						t.Fatalf("%s: edited input %q parsed to the original event", tc.name, b)
					}
				}
			}
		}
	}
}

// TestRoundTrip checks, over generated events, that Parse inverts Marshal,
// and that encoding/json reads the encoding as the same values.
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		e := randomEvent(rng)
		b, err := event.Marshal(e)
		if err != nil {
			t.Fatalf("event %d: Marshal(%#v): %v", i, e, err)
		}
		got, err := event.Parse(b)
		if err != nil {
			t.Fatalf("event %d: Parse(%q): %v", i, b, err)
		}
		if want := normalize(e); !reflect.DeepEqual(got, want) {
			t.Fatalf("event %d: Parse(Marshal(e)) =\n%#v\nwant\n%#v", i, got, want)
		}
		again, err := event.Marshal(got)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("event %d: re-Marshal = %q, %v; want %q", i, again, err, b)
		}
		checkJSON(t, b, got)
	}
}

// checkJSON decodes b with encoding/json and compares it with e.
func checkJSON(t *testing.T, b []byte, e event.Event) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("encoding/json cannot read %q: %v", b, err)
	}
	want := map[string]any{"v": json.Number("1"), "id": e.ID, "time": e.Time.Format("2006-01-02T15:04:05.000000Z"),
		"class": string(e.Class), "type": e.Type}
	for k, v := range map[string]string{"actor": e.Actor, "subject": e.Subject, "client": e.Client, "ip": e.IP} {
		if v != "" {
			want[k] = v
		}
	}
	if len(e.Fields) > 0 {
		f := map[string]any{}
		for k, v := range e.Fields {
			if n, ok := v.(int64); ok {
				v = json.Number(strconv.FormatInt(n, 10))
			}
			f[k] = v
		}
		want["fields"] = f
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("encoding/json reads %q as\n%#v\nwant\n%#v", b, m, want)
	}
}

var runePool = []rune{
	'a', 'z', 'A', '0', '_', '-', ' ', '/', '<', '>', '&', '\'', '"', '\\', 0x7f,
	0x00, 0x01, '\b', '\t', '\n', 0x0b, '\f', '\r', 0x1f, 0x80, 'é', 0x2027, 0x2028, 0x2029,
	'漢', 0xfeff, 0xfffd, 0xffff, 0x10000, 0x1f600, 0x10ffff,
}

func randomString(rng *rand.Rand, maxLen int) string {
	var sb strings.Builder
	for range rng.IntN(maxLen + 1) {
		sb.WriteRune(runePool[rng.IntN(len(runePool))])
	}
	return sb.String()
}

func randomName(rng *rand.Rand) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789_"
	b := make([]byte, 1+rng.IntN(64))
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

func randomInt(rng *rand.Rand) any {
	edge := []int64{0, 1, -1, event.MaxSafeInt, -event.MaxSafeInt, 1 << 31, -1 << 31}
	n := edge[rng.IntN(len(edge))]
	if rng.IntN(2) == 0 {
		n = rng.Int64N(2*event.MaxSafeInt+1) - event.MaxSafeInt
	}
	switch rng.IntN(10) {
	case 0:
		return int(n)
	case 1:
		return int8(n)
	case 2:
		return int16(n)
	case 3:
		return int32(n)
	case 4:
		return uint8(n)
	case 5:
		return uint16(n)
	case 6:
		return uint32(n)
	case 7:
		return uint64(n & event.MaxSafeInt)
	case 8:
		return uint(n & event.MaxSafeInt)
	}
	return n
}

func randomEvent(rng *rand.Rand) event.Event {
	maybe := func() string {
		if rng.IntN(3) == 0 {
			return ""
		}
		return randomString(rng, 12)
	}
	classes := event.Classes()
	minT, maxT := time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	e := event.Event{
		ID:      event.NewID(),
		Time:    minT.Add(time.Duration(rng.Int64N(int64(maxT.Sub(minT))))),
		Class:   classes[rng.IntN(len(classes))],
		Type:    randomName(rng),
		Actor:   maybe(),
		Subject: maybe(),
		Client:  maybe(),
		IP:      maybe(),
	}
	if rng.IntN(2) == 0 {
		e.ID = "x" + randomString(rng, 8)
	}
	if rng.IntN(4) == 0 {
		e.Time = e.Time.In(time.FixedZone("", (rng.IntN(48)-24)*1800))
	}
	if n := rng.IntN(8); n > 0 {
		e.Fields = map[string]any{}
		for range n {
			var v any
			switch rng.IntN(3) {
			case 0:
				v = randomString(rng, 20)
			case 1:
				v = rng.IntN(2) == 0
			default:
				v = randomInt(rng)
			}
			e.Fields[randomName(rng)] = v
		}
	}
	return e
}

func FuzzParse(f *testing.F) {
	for _, tc := range golden {
		f.Add([]byte(tc.want))
	}
	for _, s := range []string{
		base + `}`,
		base + `,"actor":"a","subject":"s","client":"c","ip":"::1","fields":{"a":-1,"b":true,"c":"\u2028"}}`,
		withFields(`"a":9007199254740991`),
		withFields(`"a":9007199254740992`),
		withFields(`"a":-0`),
		withFields(`"a":1.5e3`),
		withFields(`"a":{"b":1}`),
		withFields(`"a":"\u001f\b\f\n\r\t\"\\"`),
		withFields(`"a":"\u001F"`),
		withFields(`"b":1,"a":1`),
		withFields(`"a":1,"a":1`),
		base + `,"x":1}`,
		base + `,"type":"t"}`,
		`{"v":2}`,
		`{"v":1.0}`,
		"{\"v\":1,\"id\":\"\xff\"}",
		strings.Replace(base, "2026-01-15", "2026-02-30", 1) + `}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := event.Parse(in)
		// Decode, without the canonical check, gives the same event for
		// everything Parse accepts.
		if d, derr := event.Decode(in); err == nil && (derr != nil || !reflect.DeepEqual(d, e)) {
			t.Fatalf("Parse accepted %q as %+v; Decode gives %+v, %v", in, e, d, derr)
		}
		if err != nil {
			if !errors.Is(err, event.ErrMalformed) && !errors.Is(err, event.ErrVersion) {
				t.Fatalf("Parse error %v matches neither ErrMalformed nor ErrVersion", err)
			}
			return
		}
		out, err := event.Marshal(e)
		if err != nil {
			t.Fatalf("Parse accepted %q but Marshal refuses the event: %v", in, err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("Parse accepted %q, which re-encodes as %q", in, out)
		}
		checkJSON(t, in, e)
	})
}
