package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting of header, claims and JWKS documents.
// custos documents nest at most two levels (an aud array); the bound keeps a
// hostile document from costing more than a few passes over its bytes.
const maxJSONDepth = 8

var (
	errJSONNotObject = errors.New("not exactly one JSON object")
	errJSONUTF8      = errors.New("JSON is not valid UTF-8")
	errJSONDuplicate = errors.New("duplicate JSON member")
	errJSONDepth     = errors.New("JSON nested too deeply")
	errJSONTrailing  = errors.New("bytes after the JSON object")
)

// strictObject parses b as one JSON object under custos's strict rules and
// returns its top-level members as raw values:
//
//   - b is exactly the object: its first byte is '{' and its last is '}', so a
//     byte-order mark, leading or trailing whitespace and trailing garbage are
//     refused;
//   - b is valid UTF-8 (encoding/json would silently replace bad bytes);
//   - no object, at any depth, has two members with the same name after
//     unescaping ({"alg":1,"al\u0067":2} is a duplicate);
//   - nesting is at most maxJSONDepth.
//
// Member names are matched exactly later on: unlike json.Unmarshal into a
// struct, {"ALG":...} is not "alg".
func strictObject(b []byte) (map[string]json.RawMessage, error) {
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return nil, errJSONNotObject
	}
	if !utf8.Valid(b) {
		return nil, errJSONUTF8
	}
	members := make(map[string]json.RawMessage, 12)
	s := jsonScanner{b: b}
	if err := s.object(1, members); err != nil {
		return nil, err
	}
	if s.i != len(b) {
		return nil, errJSONTrailing
	}
	return members, nil
}

var errJSONSyntax = errors.New("JSON syntax error")

// jsonScanner checks JSON (RFC 8259) in place, without decoding values.
// Its input is valid UTF-8 (strictObject checks that first).
type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *jsonScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// object scans the object at s.i. With out, it records the members'
// raw values; either way it refuses duplicate names.
func (s *jsonScanner) object(depth int, out map[string]json.RawMessage) error {
	s.i++ // '{'
	var seen map[string]struct{}
	s.ws()
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if s.peek() != '"' {
			return errJSONSyntax
		}
		name, err := s.key()
		if err != nil {
			return err
		}
		if out != nil {
			if _, dup := out[name]; dup {
				return errJSONDuplicate
			}
		} else {
			if seen == nil {
				seen = make(map[string]struct{}, 8)
			}
			if _, dup := seen[name]; dup {
				return errJSONDuplicate
			}
			seen[name] = struct{}{}
		}
		s.ws()
		if s.peek() != ':' {
			return errJSONSyntax
		}
		s.i++
		s.ws()
		start := s.i
		if err := s.value(depth); err != nil {
			return err
		}
		if out != nil {
			out[name] = json.RawMessage(s.b[start:s.i])
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return errJSONSyntax
		}
	}
}

func (s *jsonScanner) array(depth int) error {
	s.i++ // '['
	s.ws()
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if err := s.value(depth); err != nil {
			return err
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return errJSONSyntax
		}
	}
}

// value scans one value inside a container at the given depth.
func (s *jsonScanner) value(depth int) error {
	switch c := s.peek(); {
	case c == '{':
		if depth >= maxJSONDepth {
			return errJSONDepth
		}
		return s.object(depth+1, nil)
	case c == '[':
		if depth >= maxJSONDepth {
			return errJSONDepth
		}
		return s.array(depth + 1)
	case c == '"':
		_, err := s.str()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || ('0' <= c && c <= '9'):
		return s.number()
	}
	return errJSONSyntax
}

func (s *jsonScanner) literal(lit string) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return errJSONSyntax
	}
	s.i += len(lit)
	return nil
}

func (s *jsonScanner) digits() int {
	n := 0
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}

func (s *jsonScanner) number() error {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case '1' <= c && c <= '9':
		s.digits()
	default:
		return errJSONSyntax
	}
	if s.peek() == '.' {
		s.i++
		if s.digits() == 0 {
			return errJSONSyntax
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if s.digits() == 0 {
			return errJSONSyntax
		}
	}
	return nil
}

// str scans the string at s.i and reports whether it has escapes.
func (s *jsonScanner) str() (escaped bool, err error) {
	s.i++ // opening quote
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return escaped, nil
		case c < 0x20:
			return false, errJSONSyntax
		case c == '\\':
			escaped = true
			s.i++
			switch s.peek() {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				if s.i+5 > len(s.b) {
					return false, errJSONSyntax
				}
				for _, h := range s.b[s.i+1 : s.i+5] {
					if !isHex(h) {
						return false, errJSONSyntax
					}
				}
				s.i += 5
			default:
				return false, errJSONSyntax
			}
		default:
			s.i++
		}
	}
	return false, errJSONSyntax
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// key scans a member name and returns it unescaped.
func (s *jsonScanner) key() (string, error) {
	start := s.i
	escaped, err := s.str()
	if err != nil {
		return "", err
	}
	raw := s.b[start:s.i]
	if !escaped {
		return string(raw[1 : len(raw)-1]), nil
	}
	var name string
	if err := json.Unmarshal(raw, &name); err != nil {
		return "", errJSONSyntax
	}
	return name, nil
}

// jsonString decodes raw as a JSON string.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if plain := raw[1 : len(raw)-1]; raw[len(raw)-1] == '"' && bytes.IndexByte(plain, '\\') < 0 && bytes.IndexByte(plain, '"') < 0 {
		// Fast path: no escapes. raw came from the decoder, so it is valid
		// UTF-8 without control characters.
		return string(plain), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// jsonInt decodes raw as a JSON number written as a plain integer: no
// fraction, no exponent (1.5 and 1.7e9 are refused), within int64.
func jsonInt(raw json.RawMessage) (int64, bool) {
	digits := raw
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}
