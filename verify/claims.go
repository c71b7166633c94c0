package verify

import "time"

// Claims are the verified claims of an access token (RFC 9068).
type Claims struct {
	Issuer    string
	Subject   string
	Audience  []string
	ExpiresAt time.Time
	IssuedAt  time.Time
	NotBefore time.Time // zero when absent
	JTI       string
	ClientID  string
	Scope     []string
	SessionID string // "sid"; empty for client-credentials tokens
	KeyID     string // kid from the header
	Algorithm string // alg from the header
}

// HasScope reports whether the token carries scope s.
func (c *Claims) HasScope(s string) bool {
	for _, have := range c.Scope {
		if have == s {
			return true
		}
	}
	return false
}
