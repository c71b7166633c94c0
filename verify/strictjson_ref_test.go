package verify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"testing"
	"unicode/utf8"
)

// The reference implementation below is the strict JSON check built on
// encoding/json's token decoder that the hand-written scanner replaced. The
// fuzz test holds the scanner to it: the same documents accepted, with the
// same members.

func referenceStrictObject(b []byte) (map[string]json.RawMessage, error) {
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return nil, errJSONNotObject
	}
	if !utf8.Valid(b) {
		return nil, errJSONUTF8
	}
	members := make(map[string]json.RawMessage, 12)
	if err := refWalkObject(b, 1, members); err != nil {
		return nil, err
	}
	return members, nil
}

// walkObject checks the object in b and records its members in out.
func refWalkObject(b []byte, depth int, out map[string]json.RawMessage) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := refExpectDelim(dec, '{'); err != nil {
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
		if err := refCheckNested(raw, depth); err != nil {
			return err
		}
		out[name] = raw
	}
	if err := refExpectDelim(dec, '}'); err != nil {
		return err
	}
	if dec.InputOffset() != int64(len(b)) {
		return errJSONTrailing
	}
	return nil
}

// checkNested checks a member or element value: objects and arrays are
// walked for duplicates and depth, scalars were validated by the decoder.
func refCheckNested(raw json.RawMessage, depth int) error {
	if len(raw) == 0 || (raw[0] != '{' && raw[0] != '[') {
		return nil
	}
	if depth >= maxJSONDepth {
		return errJSONDepth
	}
	if raw[0] == '{' {
		return refWalkObject(raw, depth+1, make(map[string]json.RawMessage))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := refExpectDelim(dec, '['); err != nil {
		return err
	}
	for dec.More() {
		var elem json.RawMessage
		if err := dec.Decode(&elem); err != nil {
			return err
		}
		if err := refCheckNested(elem, depth+1); err != nil {
			return err
		}
	}
	return refExpectDelim(dec, ']')
}

func refExpectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("expected %q", rune(want))
	}
	return nil
}

func FuzzStrictObjectMatchesReference(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1}`, `{"a":1,"a":2}`, `{"alg":1,"al\u0067":2}`, `{"a":[1,2,{"b":[true,false,null]}]}`,
		`{"a":-0.5e+10,"b":"x\ty\u00e9"}`, `{"a":01}`, `{"a":1.}`, `{"a":"\x"}`, `{"a":[[[[[[[[1]]]]]]]]}`,
		`{"a":{"b":{"c":{"d":{"e":{"f":{"g":{}}}}}}}}`, `{ "a" : 1 , "b" : [ ] }`, `{"a":1}}`, `{"a":tru}`,
		`{"iss":"https://custos.example","exp":1772439942,"aud":["a","b"],"scope":"openid"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, gerr := strictObject(b)
		want, werr := referenceStrictObject(b)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("%q: scanner %v, reference %v", b, gerr, werr)
		}
		if gerr == nil && !maps.EqualFunc(got, want, func(x, y json.RawMessage) bool { return bytes.Equal(x, y) }) {
			t.Fatalf("%q: members differ: %v, %v", b, got, want)
		}
	})
}
