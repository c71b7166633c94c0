package event

import (
	"bytes"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// ParseError reports input that is not a canonical version 1 encoding. It
// matches ErrMalformed, and also Err when set (ErrTooLarge, or an
// *InvalidError for a well-formed object holding a value Marshal refuses).
type ParseError struct {
	Offset int // byte offset of the problem in the input
	Msg    string
	Err    error
}

func (e *ParseError) Error() string {
	s := fmt.Sprintf("event: parse: at byte %d: %s", e.Offset, e.Msg)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is reports whether target is ErrMalformed.
func (e *ParseError) Is(target error) bool { return target == ErrMalformed }

// Unwrap returns the underlying cause, if any.
func (e *ParseError) Unwrap() error { return e.Err }

// Parse decodes the canonical version 1 encoding of an event, the strict
// inverse of Marshal: it accepts b only if Marshal of the decoded event
// yields exactly b. Field values come back as string, bool or int64, the
// time in UTC, and Fields is nil when the encoding has none.
//
// Input whose first member is "v" with an integer other than 1 fails with
// an error matching ErrVersion (and not ErrMalformed), whatever follows.
// Every other refusal is a *ParseError, matching ErrMalformed: input over
// MaxSize bytes (also matching ErrTooLarge), whitespace, unknown, duplicate,
// missing or misordered members, values of the wrong type, floats,
// exponents, leading zeros, negative zero, integers beyond ±(2^53-1),
// null, nested values, invalid UTF-8, escapes other than the canonical
// ones, trailing bytes, and values Marshal refuses (also matching
// ErrInvalid).
func Parse(b []byte) (Event, error) {
	if len(b) > MaxSize {
		return Event{}, &ParseError{Offset: MaxSize, Msg: fmt.Sprintf("input is %d bytes", len(b)), Err: ErrTooLarge}
	}
	d := decoder{b: b}
	e, err := d.event()
	if err != nil {
		return Event{}, err
	}
	out, err := Append(make([]byte, 0, len(b)), e)
	if err != nil {
		return Event{}, &ParseError{Offset: 0, Msg: "the event cannot be encoded", Err: err}
	}
	if !bytes.Equal(out, b) {
		i := 0
		for i < len(out) && i < len(b) && out[i] == b[i] {
			i++
		}
		return Event{}, &ParseError{Offset: i, Msg: "not in canonical form"}
	}
	return e, nil
}

// Decode decodes an entry the audit log already holds, for a reader that
// only needs its meaning (the detector): the same grammar as Parse, without
// Parse's check that re-encoding gives back the same bytes, which costs as
// much as the decoding. `custos audit verify` is what checks entries.
func Decode(b []byte) (Event, error) {
	if len(b) > MaxSize {
		return Event{}, &ParseError{Offset: MaxSize, Msg: fmt.Sprintf("input is %d bytes", len(b)), Err: ErrTooLarge}
	}
	d := decoder{b: b}
	return d.event()
}

// The members of an event, in their canonical order.
const (
	mID = iota
	mTime
	mClass
	mType
	mActor
	mSubject
	mClient
	mIP
	mFields
)

var memberNames = [...]string{"id", "time", "class", "type", "actor", "subject", "client", "ip", "fields"}

func memberIndex(name string) int {
	for i, n := range memberNames {
		if n == name {
			return i
		}
	}
	return -1
}

type decoder struct {
	b []byte
	i int
}

func (d *decoder) fail(format string, args ...any) error {
	return &ParseError{Offset: d.i, Msg: fmt.Sprintf(format, args...)}
}

// peek returns the next byte, or 0 at the end of the input.
func (d *decoder) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *decoder) expect(c byte) error {
	if d.peek() != c {
		return d.unexpected(fmt.Sprintf("%q", c))
	}
	d.i++
	return nil
}

func (d *decoder) unexpected(want string) error {
	if d.i >= len(d.b) {
		return d.fail("unexpected end of input, want %s", want)
	}
	return d.fail("unexpected %q, want %s", d.b[d.i], want)
}

func (d *decoder) event() (Event, error) {
	const head = `{"v":`
	if !bytes.HasPrefix(d.b, []byte(head)) {
		return Event{}, d.fail(`input does not begin with {"v":`)
	}
	d.i = len(head)
	start := d.i
	for '0' <= d.peek() && d.peek() <= '9' {
		d.i++
	}
	v := string(d.b[start:d.i])
	next := d.peek()
	isInt := v != "" && (v == "0" || v[0] != '0') && next != '.' && next != 'e' && next != 'E'
	switch {
	case !isInt:
		d.i = start
		return Event{}, d.fail("v is not an integer without leading zeros")
	case v != "1":
		return Event{}, fmt.Errorf("%w: v is %s, this reader knows %d", ErrVersion, v, Version)
	}

	var e Event
	seen, last := 0, -1
	for {
		switch d.peek() {
		case '}':
			d.i++
			if d.i != len(d.b) {
				return Event{}, d.fail("trailing bytes after the object")
			}
			for _, m := range [...]int{mID, mTime, mClass, mType} {
				if seen&(1<<m) == 0 {
					return Event{}, d.fail("member %q is missing", memberNames[m])
				}
			}
			return e, nil
		case ',':
			d.i++
		default:
			return Event{}, d.unexpected(`"," or "}"`)
		}
		at := d.i
		name, err := d.string()
		if err != nil {
			return Event{}, err
		}
		m := memberIndex(name)
		switch {
		case m < 0:
			d.i = at
			return Event{}, d.fail("unknown member %q", name)
		case seen&(1<<m) != 0:
			d.i = at
			return Event{}, d.fail("duplicate member %q", name)
		case m < last:
			d.i = at
			return Event{}, d.fail("member %q out of order", name)
		}
		seen, last = seen|1<<m, m
		if err := d.expect(':'); err != nil {
			return Event{}, err
		}
		if m == mFields {
			if e.Fields, err = d.fields(); err != nil {
				return Event{}, err
			}
			continue
		}
		at = d.i
		s, err := d.string()
		if err != nil {
			return Event{}, err
		}
		switch m {
		case mID:
			e.ID = s
		case mTime:
			if e.Time, err = parseTime(s); err != nil {
				d.i = at
				return Event{}, d.fail("%v", err)
			}
		case mClass:
			e.Class = Class(s)
		case mType:
			e.Type = s
		case mActor:
			e.Actor = s
		case mSubject:
			e.Subject = s
		case mClient:
			e.Client = s
		case mIP:
			e.IP = s
		}
	}
}

// fields decodes the fields object.
func (d *decoder) fields() (map[string]any, error) {
	if err := d.expect('{'); err != nil {
		return nil, err
	}
	if d.peek() == '}' {
		return nil, d.fail("empty fields must be omitted")
	}
	f := map[string]any{}
	for {
		at := d.i
		k, err := d.string()
		if err != nil {
			return nil, err
		}
		if _, dup := f[k]; dup {
			d.i = at
			return nil, d.fail("duplicate field %q", k)
		}
		if err := d.expect(':'); err != nil {
			return nil, err
		}
		if f[k], err = d.value(); err != nil {
			return nil, err
		}
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return f, nil
		default:
			return nil, d.unexpected(`"," or "}"`)
		}
	}
}

// value decodes a field value: a string, true, false or an integer.
func (d *decoder) value() (any, error) {
	switch c := d.peek(); {
	case c == '"':
		return d.string()
	case c == 't' || c == 'f':
		for _, lit := range [...]string{"true", "false"} {
			if bytes.HasPrefix(d.b[d.i:], []byte(lit)) {
				d.i += len(lit)
				return lit == "true", nil
			}
		}
		return nil, d.fail("invalid literal")
	case c == 'n':
		return nil, d.fail("null is not allowed")
	case c == '{' || c == '[':
		return nil, d.fail("nested values are not allowed")
	case c == '-' || '0' <= c && c <= '9':
		return d.integer()
	default:
		return nil, d.unexpected("a string, boolean or integer")
	}
}

// integer decodes -?(0|[1-9][0-9]*) within ±(2^53-1).
func (d *decoder) integer() (int64, error) {
	start := d.i
	if d.peek() == '-' {
		d.i++
	}
	digits := d.i
	for '0' <= d.peek() && d.peek() <= '9' {
		d.i++
	}
	switch c := d.peek(); {
	case d.i == digits:
		return 0, d.unexpected("a digit")
	case c == '.' || c == 'e' || c == 'E':
		return 0, d.fail("floats and exponents are not allowed")
	case d.b[digits] == '0' && d.i-digits > 1:
		d.i = digits
		return 0, d.fail("leading zeros are not allowed")
	case d.b[digits] == '0' && digits > start:
		d.i = start
		return 0, d.fail("negative zero is not allowed")
	case d.i-digits > 16:
		d.i = start
		return 0, d.fail("integer outside ±(2^53-1)")
	}
	n, err := strconv.ParseInt(string(d.b[start:d.i]), 10, 64)
	if err != nil || n > MaxSafeInt || n < -MaxSafeInt {
		d.i = start
		return 0, d.fail("integer outside ±(2^53-1)")
	}
	return n, nil
}

// string decodes a string holding valid UTF-8 and only the escapes the
// canonical encoding uses.
func (d *decoder) string() (string, error) {
	if d.peek() != '"' {
		return "", d.unexpected("a string")
	}
	d.i++
	start := d.i
	var buf []byte // nil until the first escape
	for {
		if d.i >= len(d.b) {
			return "", d.fail("unterminated string")
		}
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if buf != nil {
				return string(append(buf, s...)), nil
			}
			return string(s), nil
		case c == '\\':
			buf = append(buf, d.b[start:d.i]...)
			r, n := canonicalEscape(d.b[d.i:])
			if n == 0 {
				return "", d.fail("escape not in canonical form")
			}
			buf = utf8.AppendRune(buf, r)
			d.i += n
			start = d.i
		case c < 0x20:
			return "", d.fail("control character U+%04X must be escaped", c)
		case c < utf8.RuneSelf:
			d.i++
		default:
			r, n := utf8.DecodeRune(d.b[d.i:])
			if r == utf8.RuneError && n == 1 {
				return "", d.fail("invalid UTF-8")
			}
			if r == '\u2028' || r == '\u2029' {
				return "", d.fail("U+%04X must be escaped", r)
			}
			d.i += n
		}
	}
}

// canonicalEscape decodes the escape sequence at the start of b, returning
// its rune and length, or length 0 if it is not one the encoding uses.
func canonicalEscape(b []byte) (rune, int) {
	if len(b) < 2 {
		return 0, 0
	}
	switch b[1] {
	case '"', '\\':
		return rune(b[1]), 2
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'u':
		if len(b) < 6 {
			return 0, 0
		}
		var r rune
		for _, c := range b[2:6] {
			switch {
			case '0' <= c && c <= '9':
				r = r<<4 | rune(c-'0')
			case 'a' <= c && c <= 'f':
				r = r<<4 | rune(c-'a'+10)
			default:
				return 0, 0 // includes upper-case hex
			}
		}
		switch {
		case r == '\b' || r == '\f' || r == '\n' || r == '\r' || r == '\t':
			return 0, 0 // these have short forms
		case r < 0x20 || r == '\u2028' || r == '\u2029':
			return r, 6
		}
	}
	return 0, 0
}

// parseTime decodes 2006-01-02T15:04:05.000000Z. Out-of-range components
// are caught by Parse's re-encoding, which would differ.
func parseTime(s string) (time.Time, error) {
	const layout = "2006-01-02T15:04:05.000000Z"
	if len(s) != len(layout) {
		return time.Time{}, fmt.Errorf("time %q is not of the form %s", s, layout)
	}
	var n [7]int
	pos := [...][2]int{{0, 4}, {5, 7}, {8, 10}, {11, 13}, {14, 16}, {17, 19}, {20, 26}}
	for i, p := range pos {
		for _, c := range []byte(s[p[0]:p[1]]) {
			if c < '0' || c > '9' {
				return time.Time{}, fmt.Errorf("time %q is not of the form %s", s, layout)
			}
			n[i] = n[i]*10 + int(c-'0')
		}
	}
	for i, c := range []byte(layout) {
		if (c < '0' || c > '9') && s[i] != c {
			return time.Time{}, fmt.Errorf("time %q is not of the form %s", s, layout)
		}
	}
	t := time.Date(n[0], time.Month(n[1]), n[2], n[3], n[4], n[5], n[6]*1000, time.UTC)
	if t.Year() != n[0] || int(t.Month()) != n[1] || t.Day() != n[2] || t.Hour() != n[3] || t.Minute() != n[4] || t.Second() != n[5] {
		return time.Time{}, fmt.Errorf("time %q does not exist", s)
	}
	return t, nil
}
