package accounts

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Input limits.
const (
	MaxLoginIDBytes  = 254 // longest e-mail address (RFC 5321 path limit)
	MinPhoneDigits   = 8   // E.164: '+' and 8–15 digits
	MaxPhoneDigits   = 15
	MaxNameRunes     = 100
	MinPasswordRunes = 8   // NIST SP 800-63B; no composition rules
	MaxPasswordBytes = 256 // bounds hashing work per attempt
	MaxReasonRunes   = 500
)

// NormalizeLoginID returns the canonical form of a login ID, which is either
// an e-mail address or an E.164 phone number.
//
// E-mail: surrounding white space is trimmed and the whole address is
// lower-cased — customers do not expect Kim@x.com and kim@x.com to be two
// accounts, and mail providers treat them as one; there must be exactly one '@', non-empty
// local part and domain, no empty domain label, no white space or control
// characters, and at most MaxLoginIDBytes bytes.
//
// Phone: a leading '+' then 8–15 digits, the first not 0; spaces and dashes
// in the input are removed ("+82 10-1234-5678" → "+821012345678").
//
// Anything else, and input that is not valid UTF-8, is an *InputError.
func NormalizeLoginID(s string) (string, error) {
	bad := func(msg string) (string, error) { return "", &InputError{Field: "login_id", Msg: msg} }
	if !utf8.ValidString(s) {
		return bad("not valid UTF-8")
	}
	s = strings.TrimSpace(s)
	if len(s) > 4*MaxLoginIDBytes {
		return bad("too long")
	}
	switch {
	case strings.Contains(s, "@"):
		local, domain, _ := strings.Cut(s, "@")
		switch {
		case local == "" || domain == "":
			return bad("an e-mail address needs text before and after '@'")
		case strings.Contains(domain, "@"):
			return bad("an e-mail address has exactly one '@'")
		case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			return bad("an e-mail address may not contain spaces or control characters")
		case strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, ".."):
			return bad("the domain has an empty label")
		}
		out := strings.ToLower(local + "@" + domain)
		if len(out) > MaxLoginIDBytes {
			return bad("an e-mail address is at most 254 bytes")
		}
		if !utf8.ValidString(out) { // ToLower keeps UTF-8 valid; belt and braces
			return bad("not valid UTF-8")
		}
		return out, nil
	case strings.HasPrefix(s, "+"):
		digits := strings.Map(func(r rune) rune {
			if r == ' ' || r == '-' {
				return -1
			}
			return r
		}, s[1:])
		if len(digits) < MinPhoneDigits || len(digits) > MaxPhoneDigits {
			return bad("a phone number needs '+', a country code and 8 to 15 digits in all")
		}
		for i := 0; i < len(digits); i++ {
			if digits[i] < '0' || digits[i] > '9' {
				return bad("a phone number may contain only digits, spaces and dashes after '+'")
			}
		}
		if digits[0] == '0' {
			return bad("a country code does not start with 0")
		}
		return "+" + digits, nil
	default:
		return bad("enter an e-mail address or a phone number starting with '+' and the country code")
	}
}

// NormalizeName returns a display name with surrounding white space trimmed.
// It must be valid UTF-8, 1–100 characters, with no control characters. Any
// script is fine ("김민준", "Zoë O'Brien").
func NormalizeName(s string) (string, error) {
	bad := func(msg string) (string, error) { return "", &InputError{Field: "name", Msg: msg} }
	if !utf8.ValidString(s) {
		return bad("not valid UTF-8")
	}
	s = strings.TrimSpace(s)
	if n := utf8.RuneCountInString(s); n < 1 || n > MaxNameRunes {
		return bad("a name has 1 to 100 characters")
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return bad("a name may not contain control characters")
	}
	return s, nil
}

// ValidatePassword checks a new password: valid UTF-8, at least
// MinPasswordRunes characters, at most MaxPasswordBytes bytes, and not the
// login ID itself (compared case-insensitively). There are no composition
// rules (NIST SP 800-63B). Errors never include the password.
func ValidatePassword(password, loginID string) error {
	bad := func(msg string) error { return &InputError{Field: "password", Msg: msg} }
	switch {
	case !utf8.ValidString(password):
		return bad("not valid UTF-8")
	case utf8.RuneCountInString(password) < MinPasswordRunes:
		return bad("a password has at least 8 characters")
	case len(password) > MaxPasswordBytes:
		return bad("a password has at most 256 bytes")
	case loginID != "" && strings.EqualFold(password, loginID):
		return bad("a password may not be the login ID")
	}
	return nil
}
