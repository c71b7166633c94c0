package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
	if err := walkObject(b, 1, members); err != nil {
		return nil, err
	}
	return members, nil
}

// walkObject checks the object in b and records its members in out.
func walkObject(b []byte, depth int, out map[string]json.RawMessage) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, ok := tok.(string)
		if !ok {
			return errJSONNotObject
		}
		if _, dup := out[name]; dup {
			return errJSONDuplicate
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		if err := checkNested(raw, depth); err != nil {
			return err
		}
		out[name] = raw
	}
	if err := expectDelim(dec, '}'); err != nil {
		return err
	}
	if dec.InputOffset() != int64(len(b)) {
		return errJSONTrailing
	}
	return nil
}

// checkNested checks a member or element value: objects and arrays are
// walked for duplicates and depth, scalars were validated by the decoder.
func checkNested(raw json.RawMessage, depth int) error {
	if len(raw) == 0 || (raw[0] != '{' && raw[0] != '[') {
		return nil
	}
	if depth >= maxJSONDepth {
		return errJSONDepth
	}
	if raw[0] == '{' {
		return walkObject(raw, depth+1, make(map[string]json.RawMessage))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := expectDelim(dec, '['); err != nil {
		return err
	}
	for dec.More() {
		var elem json.RawMessage
		if err := dec.Decode(&elem); err != nil {
			return err
		}
		if err := checkNested(elem, depth+1); err != nil {
			return err
		}
	}
	return expectDelim(dec, ']')
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("expected %q", rune(want))
	}
	return nil
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
