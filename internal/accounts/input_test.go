package accounts

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizeLoginID(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" means an *InputError
	}{
		{"alice@example.com", "alice@example.com"},
		{"  Alice.Smith@Example.COM \t", "alice.smith@example.com"},
		{"+tag@example.com", "+tag@example.com"},
		{"김민준@예시.한국", "김민준@예시.한국"},
		{"user@LOCALHOST", "user@localhost"},
		{"+821012345678", "+821012345678"},
		{"+82 10-1234-5678", "+821012345678"},
		{" +1 415 555 0100 ", "+14155550100"},
		{"+12345678", "+12345678"},               // 8 digits
		{"+123456789012345", "+123456789012345"}, // 15 digits
		{"", ""},
		{"   ", ""},
		{"alice", ""},
		{"@example.com", ""},
		{"alice@", ""},
		{"a@b@example.com", ""},
		{"al ice@example.com", ""},
		{"alice@exa mple.com", ""},
		{"alice\x00@example.com", ""},
		{"alice@example..com", ""},
		{"alice@.example.com", ""},
		{"alice@example.com.", ""},
		{"alice@\u2028example.com", ""},
		{strings.Repeat("a", 250) + "@x.com", ""},
		{"bad\xffutf8@example.com", ""},
		{"+1234567", ""},          // 7 digits
		{"+1234567890123456", ""}, // 16 digits
		{"+0123456789", ""},
		{"+82 (10) 1234", ""},
		{"+82_10_1234_5678", ""},
		{"+", ""},
		{"01012345678", ""},   // no country code
		{"+８２１０１２３４５６７８", ""}, // full-width digits
	} {
		got, err := NormalizeLoginID(tc.in)
		if tc.want == "" {
			if _, ok := errors.AsType[*InputError](err); !ok || got != "" {
				t.Errorf("NormalizeLoginID(%q) = %q, %v; want *InputError", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeLoginID(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func FuzzNormalizeLoginID(f *testing.F) {
	for _, s := range []string{"alice@Example.com", "+82 10-1234-5678", "김민준@예시.한국", "a@b", "+", "@", "İ@İ.com", "x@\u212a.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeLoginID(s)
		if err != nil {
			if _, ok := errors.AsType[*InputError](err); !ok {
				t.Fatalf("error %v is not an *InputError", err)
			}
			return
		}
		if !utf8.ValidString(got) || len(got) > MaxLoginIDBytes || got == "" {
			t.Fatalf("NormalizeLoginID(%q) = %q: invalid result", s, got)
		}
		again, err := NormalizeLoginID(got)
		if err != nil || again != got {
			t.Fatalf("not idempotent: %q → %q → %q, %v", s, got, again, err)
		}
	})
}

func TestNormalizeName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"김민준", "김민준"},
		{"  Zoë O'Brien ", "Zoë O'Brien"},
		{"李", "李"},
		{strings.Repeat("가", 100), strings.Repeat("가", 100)},
		{strings.Repeat("가", 101), ""},
		{"", ""},
		{"   ", ""},
		{"Bob\x07", ""},
		{"Bob\nSmith", ""},
		{"Bob\u0085Smith", ""},
		{"\xff", ""},
	} {
		got, err := NormalizeName(tc.in)
		if tc.want == "" {
			if ie, ok := errors.AsType[*InputError](err); !ok || ie.Field != "name" {
				t.Errorf("NormalizeName(%q) = %q, %v; want *InputError on name", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestValidatePassword(t *testing.T) {
	for _, tc := range []struct {
		pw, login string
		ok        bool
	}{
		{"12345678", "a@b.c", true},
		{"비밀번호는여덟자", "a@b.c", true}, // 8 characters, 24 bytes
		{"비밀번호", "a@b.c", false},    // 4 characters, 12 bytes
		{"1234567", "a@b.c", false},
		{strings.Repeat("x", 256), "a@b.c", true},
		{strings.Repeat("x", 257), "a@b.c", false},
		{"password\xff", "a@b.c", false},
		{"Alice@Example.com", "alice@example.com", false},
		{"alice@example.com!", "alice@example.com", true},
	} {
		err := ValidatePassword(tc.pw, tc.login)
		if tc.ok != (err == nil) {
			t.Errorf("ValidatePassword(%q) = %v, want ok %v", tc.pw, err, tc.ok)
		}
		if err != nil {
			if ie, ok := errors.AsType[*InputError](err); !ok || ie.Field != "password" || strings.Contains(err.Error(), tc.pw) {
				t.Errorf("ValidatePassword(%q) error %v: want *InputError on password, without the password", tc.pw, err)
			}
		}
	}
}
