package verify

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"
)

// Defaults for Config.
const (
	// DefaultMaxLifetime is the longest exp − iat accepted; it is also the
	// ceiling: custos never issues access tokens that live longer.
	DefaultMaxLifetime = 15 * time.Minute
	// DefaultLeeway is the clock skew tolerated for exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway is the largest Leeway New accepts.
	MaxLeeway = 2 * time.Minute
	// DefaultMaxTokenSize caps the token, in bytes, before anything is parsed.
	DefaultMaxTokenSize = 8 << 10
	// DefaultCacheSize is how many verified tokens a Verifier remembers.
	DefaultCacheSize = 4096
)

// ErrInvalidConfig is wrapped by the error New returns for a bad Config.
var ErrInvalidConfig = errors.New("verify: invalid config")

// Config configures a Verifier. The zero value of every optional field
// selects the secure default.
type Config struct {
	// Issuer is the exact iss the tokens must carry (the issuer URL).
	Issuer string
	// Audience is this resource server's identifier; aud must contain it.
	Audience string
	// AnyAudience accepts tokens for every audience instead of Audience. It
	// is for the issuer's own endpoints (introspection, revocation,
	// userinfo), which answer for tokens meant for any resource server; a
	// resource server must never set it (A19).
	AnyAudience bool
	// Keys finds verification keys by kid (a *JWKS, or custos's key custody
	// in-process).
	Keys KeySet
	// Receipts confirms that custos issued each token and has not revoked
	// it (an *Introspector, or LocalReceipts in-process). It is required
	// unless AllowNoReceipts is set.
	Receipts ReceiptChecker
	// AllowNoReceipts permits a nil Receipts. Without receipts a token signed
	// with a leaked key is accepted: set it only in tests and tools.
	AllowNoReceipts bool
	// Algorithms is the allow-list of JWS algorithms, a subset of AlgEdDSA
	// and AlgES256; empty means both.
	Algorithms []string
	// MaxLifetime is the longest accepted exp − iat; zero means
	// DefaultMaxLifetime, which is also the maximum.
	MaxLifetime time.Duration
	// Leeway is the clock skew tolerated for exp, nbf and iat; zero means
	// DefaultLeeway, negative means none. At most MaxLeeway.
	Leeway time.Duration
	// MaxTokenSize caps the token length in bytes; zero means
	// DefaultMaxTokenSize.
	MaxTokenSize int
	// CacheSize bounds the cache of verified tokens; zero means
	// DefaultCacheSize, negative disables the cache.
	CacheSize int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// withDefaults validates c and fills in defaults.
func (c Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if u, err := url.Parse(c.Issuer); c.Issuer == "" || err != nil || !u.IsAbs() || u.Host == "" {
		return bad("Issuer must be an absolute URL")
	}
	if c.Audience == "" && !c.AnyAudience {
		return bad("Audience is required")
	}
	if c.Audience != "" && c.AnyAudience {
		return bad("set Audience or AnyAudience, not both")
	}
	if c.Keys == nil {
		return bad("Keys is required")
	}
	if c.Receipts == nil && !c.AllowNoReceipts {
		return bad("Receipts is required (set AllowNoReceipts to run without, which accepts forged tokens)")
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = []string{AlgEdDSA, AlgES256}
	} else {
		c.Algorithms = slices.Clone(c.Algorithms)
	}
	for _, a := range c.Algorithms {
		if a != AlgEdDSA && a != AlgES256 {
			return bad("algorithm %q is not supported", a)
		}
	}
	switch {
	case c.MaxLifetime == 0:
		c.MaxLifetime = DefaultMaxLifetime
	case c.MaxLifetime < time.Second || c.MaxLifetime > DefaultMaxLifetime:
		return bad("MaxLifetime must be between 1s and %v", DefaultMaxLifetime)
	}
	switch {
	case c.Leeway == 0:
		c.Leeway = DefaultLeeway
	case c.Leeway < 0:
		c.Leeway = 0
	case c.Leeway > MaxLeeway:
		return bad("Leeway must be at most %v", MaxLeeway)
	}
	switch {
	case c.MaxTokenSize == 0:
		c.MaxTokenSize = DefaultMaxTokenSize
	case c.MaxTokenSize < 0 || c.MaxTokenSize > 64<<10:
		return bad("MaxTokenSize must be between 1 and 65536")
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}
