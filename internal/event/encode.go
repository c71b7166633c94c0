package event

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Version is the encoding version Marshal writes and Parse accepts, the
// value of the "v" member.
const Version = 1

// MaxSize is the largest encoding in bytes: the largest entry a C2SP
// tlog-tiles entry bundle can hold.
const MaxSize = 65535

// MaxSafeInt is the largest magnitude of an integer field value, 2^53-1, so
// that every JSON reader (including those that read numbers as IEEE 754
// doubles) sees the exact value.
const MaxSafeInt = 1<<53 - 1

// maxName is the longest event type or field key, in bytes.
const maxName = 64

var (
	// ErrInvalid is matched by every *InvalidError: the event cannot be
	// encoded as it stands.
	ErrInvalid = errors.New("event: invalid event")
	// ErrTooLarge means the encoding would exceed (or the input to Parse
	// exceeds) MaxSize bytes.
	ErrTooLarge = errors.New("event: encoding exceeds 65535 bytes")
	// ErrMalformed is matched by every *ParseError: the input is not the
	// canonical version 1 encoding of any event.
	ErrMalformed = errors.New("event: not a canonical v1 encoding")
	// ErrVersion means the input carries a "v" other than 1: an encoding of
	// another version, which this package does not read.
	ErrVersion = errors.New("event: unsupported encoding version")
)

// InvalidError reports an event member that cannot be encoded. It matches
// ErrInvalid.
type InvalidError struct {
	Member string // "id", "time", "class", "type", "actor", "subject", "client", "ip" or "fields"
	Key    string // the Fields key at fault, when Member is "fields"
	Reason string
}

func (e *InvalidError) Error() string {
	if e.Member == "fields" {
		return fmt.Sprintf("event: field %q: %s", e.Key, e.Reason)
	}
	return fmt.Sprintf("event: %s: %s", e.Member, e.Reason)
}

// Is reports whether target is ErrInvalid.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(member, reason string) error { return &InvalidError{Member: member, Reason: reason} }

func invalidField(key, reason string) error {
	return &InvalidError{Member: "fields", Key: key, Reason: reason}
}

// Marshal returns the canonical version 1 encoding of e, as specified in
// docs/spec/audit-event.md: a JSON object without whitespace whose members
// are, in this order, "v":1, "id", "time", "class", "type", "actor",
// "subject", "client", "ip" and "fields", the last five omitted when empty.
//
// The time is written in UTC truncated to the microsecond. Field keys are
// sorted. Field values must be strings, booleans or integers: int, int8,
// int16, int32 and int64 within ±MaxSafeInt, uint8, uint16 and uint32, and
// uint and uint64 up to MaxSafeInt. Every string must be valid UTF-8.
//
// Marshal fails with an *InvalidError (matching ErrInvalid) when e.ID is
// empty, e.Time is zero or outside the years 0001–9999, e.Class is not
// Valid, e.Type or a field key does not match [a-z0-9_]{1,64}, a string is
// not valid UTF-8 or a field value has any other type or range; and with an
// error matching ErrTooLarge when the encoding would exceed MaxSize bytes.
func Marshal(e Event) ([]byte, error) { return Append(nil, e) }

// Append appends the canonical encoding of e to dst, like Marshal. On error
// it returns dst unchanged.
func Append(dst []byte, e Event) ([]byte, error) {
	var arr [24]Field
	fields := arr[:0]
	for k, v := range e.Fields {
		f, err := fieldOf(k, v)
		if err != nil {
			// Reported in its place among the fields, so that which
			// of several problems is reported does not depend on the
			// map's order.
			f = Field{Key: k, kind: kindInvalid}
		}
		fields = append(fields, f)
	}
	slices.SortFunc(fields, func(a, b Field) int { return strings.Compare(a.Key, b.Key) })
	return appendEvent(dst, e, fields)
}

// Field is one of an event's fields given as a list, to AppendList: a
// string, an integer or a boolean (see String, Int and Bool).
type Field struct {
	Key  string
	kind fieldKind
	str  string
	n    int64
}

type fieldKind uint8

const (
	kindString fieldKind = iota
	kindInt
	kindBool
	kindInvalid // a map value Append cannot encode; its error comes from fieldOf
)

// String, Int and Bool make fields.
func String(key, v string) Field    { return Field{Key: key, kind: kindString, str: v} }
func Int(key string, v int64) Field { return Field{Key: key, kind: kindInt, n: v} }
func Bool(key string, v bool) Field {
	f := Field{Key: key, kind: kindBool}
	if v {
		f.n = 1
	}
	return f
}

// AppendList is Append for an event whose fields are given as a list, in
// ascending order of key, rather than in e.Fields (which must be empty):
// the same encoding, without building and sorting a map. It fails like
// Marshal, and with an *InvalidError if the keys are not in ascending order
// or e.Fields is not empty.
func AppendList(dst []byte, e Event, fields ...Field) ([]byte, error) {
	if len(e.Fields) > 0 {
		return dst, invalid("fields", "given both as a map and as a list")
	}
	for i, f := range fields {
		if f.kind == kindInvalid {
			return dst, invalidField(f.Key, "not made by String, Int or Bool")
		}
		if i > 0 && fields[i-1].Key >= f.Key {
			return dst, invalidField(f.Key, "not after "+fields[i-1].Key+": keys must be unique and in ascending order")
		}
	}
	return appendEvent(dst, e, fields)
}

// fieldOf converts the field value v under key k.
func fieldOf(k string, v any) (Field, error) {
	switch v := v.(type) {
	case string:
		return String(k, v), nil
	case bool:
		return Bool(k, v), nil
	case int:
		return Int(k, int64(v)), nil
	case int8:
		return Int(k, int64(v)), nil
	case int16:
		return Int(k, int64(v)), nil
	case int32:
		return Int(k, int64(v)), nil
	case int64:
		return Int(k, v), nil
	case uint8:
		return Int(k, int64(v)), nil
	case uint16:
		return Int(k, int64(v)), nil
	case uint32:
		return Int(k, int64(v)), nil
	case uint:
		if uint64(v) > MaxSafeInt {
			return Field{}, invalidField(k, fmt.Sprintf("integer %d exceeds 2^53-1", v))
		}
		return Int(k, int64(v)), nil
	case uint64:
		if v > MaxSafeInt {
			return Field{}, invalidField(k, fmt.Sprintf("integer %d exceeds 2^53-1", v))
		}
		return Int(k, int64(v)), nil
	case nil:
		return Field{}, invalidField(k, "value is nil; use a string, boolean or integer")
	case float32, float64:
		return Field{}, invalidField(k, fmt.Sprintf("floating-point value %v is not allowed; use an integer or a string", v))
	case map[string]any, []any, map[string]string, []string:
		return Field{}, invalidField(k, fmt.Sprintf("nested value of type %T is not allowed", v))
	default:
		return Field{}, invalidField(k, fmt.Sprintf("value of type %T is not allowed; use a string, boolean or integer", v))
	}
}

// appendEvent appends e's encoding with fields, sorted by key, as its
// fields; e.Fields holds the values of those of kind kindInvalid.
func appendEvent(dst []byte, e Event, fields []Field) ([]byte, error) {
	start := len(dst)
	if e.ID == "" {
		return dst, invalid("id", "is empty (use NewID)")
	}
	t := e.Time.UTC()
	if y := t.Year(); y < 1 || y > 9999 {
		return dst, invalid("time", fmt.Sprintf("year %d outside 0001-9999", y))
	}
	if t.Truncate(time.Microsecond).IsZero() {
		return dst, invalid("time", "is zero")
	}
	if !e.Class.Valid() {
		return dst, invalid("class", fmt.Sprintf("%q is not a known class", string(e.Class)))
	}
	if !isName(e.Type) {
		return dst, invalid("type", fmt.Sprintf("%q does not match [a-z0-9_]{1,64}", e.Type))
	}

	// Measure: lower is exact but for escapes and integers, counted at
	// one digit; size counts integers at their widest.
	lower := len(`{"v":1,"id":"","time":"2006-01-02T15:04:05.000000Z","class":"","type":""}`) +
		len(e.ID) + len(e.Class) + len(e.Type)
	const intWidth = len("-9007199254740991")
	ints := 0
	optional := [...]struct{ name, val string }{
		{`,"actor":`, e.Actor}, {`,"subject":`, e.Subject}, {`,"client":`, e.Client}, {`,"ip":`, e.IP},
	}
	for _, m := range optional {
		if m.val != "" {
			lower += len(m.name) + len(m.val) + 2
		}
	}
	if len(fields) > 0 {
		lower += len(`,"fields":{}`) - len(",") // the first key has no comma
		for _, f := range fields {
			lower += len(f.Key) + len(`,"":`)
			switch f.kind {
			case kindString:
				lower += len(f.str) + 2
			case kindBool:
				lower += len("true")
			default:
				lower++
				ints++
			}
		}
	}
	if lower > MaxSize {
		return dst, fmt.Errorf("%w: over %d bytes", ErrTooLarge, MaxSize)
	}
	b := slices.Grow(dst, lower+ints*(intWidth-1))

	b = append(b, `{"v":1,"id":`...)
	var ok bool
	if b, ok = appendString(b, e.ID); !ok {
		return dst, invalid("id", "is not valid UTF-8")
	}
	b = append(b, `,"time":"`...)
	b = appendTime(b, t)
	b = append(b, `","class":"`...)
	b = append(b, e.Class...)
	b = append(b, `","type":"`...)
	b = append(b, e.Type...)
	b = append(b, '"')
	for _, m := range optional {
		if m.val == "" {
			continue
		}
		b = append(b, m.name...)
		if b, ok = appendString(b, m.val); !ok {
			return dst, invalid(m.name[2:len(m.name)-2], "is not valid UTF-8")
		}
	}
	if len(fields) > 0 {
		b = append(b, `,"fields":{`...)
		for i, f := range fields {
			if !isName(f.Key) {
				return dst, invalidField(f.Key, "key does not match [a-z0-9_]{1,64}")
			}
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, f.Key...)
			b = append(b, '"', ':')
			switch f.kind {
			case kindString:
				if b, ok = appendString(b, f.str); !ok {
					return dst, invalidField(f.Key, "string is not valid UTF-8")
				}
			case kindBool:
				b = strconv.AppendBool(b, f.n != 0)
			case kindInvalid:
				_, err := fieldOf(f.Key, e.Fields[f.Key])
				return dst, err
			default:
				if f.n > MaxSafeInt || f.n < -MaxSafeInt {
					return dst, invalidField(f.Key, fmt.Sprintf("integer %d outside ±(2^53-1)", f.n))
				}
				b = strconv.AppendInt(b, f.n, 10)
			}
		}
		b = append(b, '}')
	}
	b = append(b, '}')
	if n := len(b) - start; n > MaxSize {
		return dst, fmt.Errorf("%w: %d bytes", ErrTooLarge, n)
	}
	return b, nil
}

// isName reports whether s matches [a-z0-9_]{1,64}.
func isName(s string) bool {
	if len(s) == 0 || len(s) > maxName {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// appendTime appends t (UTC, year 1–9999) as 2006-01-02T15:04:05.000000Z.
func appendTime(b []byte, t time.Time) []byte {
	year, month, day := t.Date()
	hour, min, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, min, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/1000, 6)
	return append(b, 'Z')
}

// appendDigits appends the n low decimal digits of v ≥ 0, zero-padded.
func appendDigits(b []byte, v, n int) []byte {
	var d [6]byte
	for i := n - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, d[:n]...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a canonical JSON string. It reports false,
// having appended an unspecified prefix, if s is not valid UTF-8.
func appendString(b []byte, s string) ([]byte, bool) {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return b, false
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			start = i + size
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"'), true
}
