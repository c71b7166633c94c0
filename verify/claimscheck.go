package verify

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// parseClaims parses and checks an access token's claims set at now. It
// returns an *Error whose Reason says which rule failed; the rules run in
// this order (docs/spec/access-token.md):
//
//  1. one strict JSON object                                   → malformed
//  2. every known claim has its type: iss, sub, jti, client_id,
//     scope, sid strings; exp, iat, nbf, auth_time non-negative
//     integers (no fraction, no exponent); aud a string or a
//     non-empty array of strings; scope well-formed             → bad_claims
//  3. sub, jti, client_id present and non-empty                → bad_claims
//  4. iss equals Config.Issuer exactly                         → wrong_issuer
//  5. aud contains Config.Audience exactly                     → wrong_audience
//  6. exp and iat present, 0 < exp − iat ≤ MaxLifetime          → lifetime
//  7. iat and nbf not after now + Leeway                       → not_yet_valid
//  8. now before exp + Leeway                                  → expired
func parseClaims(b []byte, cfg Config, now time.Time) (*Claims, error) {
	members, err := strictObject(b)
	if err != nil {
		return nil, refuse(ReasonMalformed, fmt.Errorf("claims: %w", err))
	}
	badType := func(name string) error {
		return refuse(ReasonClaims, fmt.Errorf("claim %s has the wrong type", name))
	}
	var c Claims
	str := func(name string, dst *string) error {
		raw, ok := members[name]
		if !ok {
			return nil
		}
		if *dst, ok = jsonString(raw); !ok {
			return badType(name)
		}
		return nil
	}
	for _, m := range []struct {
		name string
		dst  *string
	}{{"iss", &c.Issuer}, {"sub", &c.Subject}, {"jti", &c.JTI}, {"client_id", &c.ClientID}, {"sid", &c.SessionID}} {
		if err := str(m.name, m.dst); err != nil {
			return nil, err
		}
	}
	var scope string
	if err := str("scope", &scope); err != nil {
		return nil, err
	}
	if c.Scope, err = parseScope(scope); err != nil {
		return nil, refuse(ReasonClaims, err)
	}
	// NumericDates; nil when absent.
	var exp, iat, nbf, authTime *int64
	for _, m := range []struct {
		name string
		dst  **int64
	}{{"exp", &exp}, {"iat", &iat}, {"nbf", &nbf}, {"auth_time", &authTime}} {
		raw, ok := members[m.name]
		if !ok {
			continue
		}
		n, ok := jsonInt(raw)
		if !ok || n < 0 {
			return nil, badType(m.name)
		}
		*m.dst = &n
	}
	if raw, ok := members["aud"]; ok {
		if c.Audience, ok = parseAudience(raw); !ok {
			return nil, badType("aud")
		}
	}
	for _, m := range [...]struct{ name, val string }{{"sub", c.Subject}, {"jti", c.JTI}, {"client_id", c.ClientID}} {
		if m.val == "" {
			return nil, refuse(ReasonClaims, fmt.Errorf("claim %s is missing or empty", m.name))
		}
	}
	if c.Issuer != cfg.Issuer {
		return nil, refuse(ReasonIssuer, errors.New("iss is not the expected issuer"))
	}
	if !cfg.AnyAudience && !slices.Contains(c.Audience, cfg.Audience) {
		return nil, refuse(ReasonAudience, errors.New("aud does not name this resource server"))
	}
	if exp == nil || iat == nil {
		return nil, refuse(ReasonLifetime, errors.New("exp and iat are required"))
	}
	if *exp <= *iat || *exp-*iat > int64(cfg.MaxLifetime/time.Second) {
		return nil, refuse(ReasonLifetime, fmt.Errorf("lifetime %ds is outside (0, %v]", *exp-*iat, cfg.MaxLifetime))
	}
	c.ExpiresAt, c.IssuedAt = time.Unix(*exp, 0), time.Unix(*iat, 0)
	latest := now.Add(cfg.Leeway)
	if c.IssuedAt.After(latest) {
		return nil, refuse(ReasonNotYetValid, errors.New("iat is in the future"))
	}
	if nbf != nil {
		c.NotBefore = time.Unix(*nbf, 0)
		if c.NotBefore.After(latest) {
			return nil, refuse(ReasonNotYetValid, errors.New("nbf is in the future"))
		}
	}
	if !now.Before(c.ExpiresAt.Add(cfg.Leeway)) {
		return nil, refuse(ReasonExpired, errors.New("exp has passed"))
	}
	return &c, nil
}

// parseAudience accepts a string or a non-empty array of strings (RFC 7519
// §4.1.3).
func parseAudience(raw json.RawMessage) ([]string, bool) {
	if s, ok := jsonString(raw); ok {
		return []string{s}, true
	}
	if len(raw) == 0 || raw[0] != '[' {
		return nil, false
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil || len(elems) == 0 {
		return nil, false
	}
	aud := make([]string, 0, len(elems))
	for _, e := range elems {
		s, ok := jsonString(e)
		if !ok {
			return nil, false
		}
		aud = append(aud, s)
	}
	return aud, true
}

// parseScope splits an RFC 6749 §3.3 scope: scope-tokens of %x21 / %x23-5B /
// %x5D-7E separated by single spaces. The empty string is no scope.
func parseScope(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	scopes := strings.Split(s, " ")
	for _, tok := range scopes {
		if tok == "" {
			return nil, errors.New("scope has an empty scope-token")
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
				return nil, errors.New("scope has a character outside scope-token")
			}
		}
	}
	return scopes, nil
}

// clone returns a deep copy of c.
func (c *Claims) clone() *Claims {
	cp := *c
	cp.Audience = slices.Clone(c.Audience)
	cp.Scope = slices.Clone(c.Scope)
	return &cp
}
