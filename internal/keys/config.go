package keys

import (
	"log/slog"
	"time"
)

// Algorithms custody generates and imports.
const (
	AlgEdDSA = "EdDSA" // Ed25519 (RFC 8037), the default
	AlgES256 = "ES256" // ECDSA P-256 with SHA-256, raw r‖s signatures
)

// Defaults for Config fields left zero.
const (
	DefaultAlgorithm        = AlgEdDSA
	DefaultActivePeriod     = 24 * time.Hour
	DefaultJWKSMaxAge       = 5 * time.Minute
	DefaultMaxTokenLifetime = 15 * time.Minute
	DefaultLeeway           = time.Minute
	DefaultCustodian        = "system"
	DefaultTickInterval     = time.Minute
	// DefaultPublishLead is PublishLeadFactor × JWKSMaxAge.
	PublishLeadFactor = 2
	// DefaultMaxAge is MaxAgeFactor × ActivePeriod.
	MaxAgeFactor = 2
)

// ActorSystem is the actor of transitions custody makes by itself.
const ActorSystem = "system"

// Config configures custody. The zero value of every field means its default.
type Config struct {
	// Algorithm of newly generated keys: AlgEdDSA (default) or AlgES256.
	Algorithm string
	// ActivePeriod is how long a key signs before rotation replaces it.
	ActivePeriod time.Duration
	// JWKSMaxAge is the Cache-Control max-age the issuer puts on its JWKS.
	JWKSMaxAge time.Duration
	// PublishLead is how long a pending key is published before it may
	// sign. Default PublishLeadFactor × JWKSMaxAge; at least JWKSMaxAge and
	// at most ActivePeriod.
	PublishLead time.Duration
	// MaxTokenLifetime is the longest lifetime of a token custody signs for;
	// a retired key stays published MaxTokenLifetime + Leeway after it
	// stops signing.
	MaxTokenLifetime time.Duration
	// Leeway covers clock skew between issuer and verifiers, and the lag
	// (≤ TickInterval) before other nodes reload a rotation.
	Leeway time.Duration
	// MaxAge is the longest a key may stay active. Tick rotates a key past
	// it even when its successor has not been published for PublishLead,
	// and Signer rotates before signing with it. Default MaxAgeFactor ×
	// ActivePeriod; at least ActivePeriod.
	MaxAge time.Duration
	// Custodian is recorded on every key custody generates.
	Custodian string
	// TickInterval is how often Run reloads and ticks.
	TickInterval time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives Run's tick errors; default slog.Default().
	Logger *slog.Logger
}

// withDefaults returns c with zero fields set to their defaults, validated.
func (c Config) withDefaults() (Config, error) {
	if c.Algorithm == "" {
		c.Algorithm = DefaultAlgorithm
	}
	if c.ActivePeriod == 0 {
		c.ActivePeriod = DefaultActivePeriod
	}
	if c.JWKSMaxAge == 0 {
		c.JWKSMaxAge = DefaultJWKSMaxAge
	}
	if c.PublishLead == 0 {
		c.PublishLead = PublishLeadFactor * c.JWKSMaxAge
	}
	if c.MaxTokenLifetime == 0 {
		c.MaxTokenLifetime = DefaultMaxTokenLifetime
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.MaxAge == 0 {
		c.MaxAge = MaxAgeFactor * c.ActivePeriod
	}
	if c.Custodian == "" {
		c.Custodian = DefaultCustodian
	}
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.Algorithm != AlgEdDSA && c.Algorithm != AlgES256:
		return c, &ConfigError{"Algorithm", "must be " + AlgEdDSA + " or " + AlgES256}
	case c.ActivePeriod < 0:
		return c, &ConfigError{"ActivePeriod", "must be positive"}
	case c.JWKSMaxAge < 0:
		return c, &ConfigError{"JWKSMaxAge", "must be positive"}
	case c.PublishLead < c.JWKSMaxAge:
		return c, &ConfigError{"PublishLead", "must be at least JWKSMaxAge, or verifiers with a cached JWKS refuse the new key"}
	case c.PublishLead > c.ActivePeriod:
		return c, &ConfigError{"PublishLead", "must be at most ActivePeriod, or scheduled rotation can never promote the successor"}
	case c.MaxTokenLifetime < 0:
		return c, &ConfigError{"MaxTokenLifetime", "must be positive"}
	case c.Leeway < 0:
		return c, &ConfigError{"Leeway", "must not be negative"}
	case c.MaxAge < c.ActivePeriod:
		return c, &ConfigError{"MaxAge", "must be at least ActivePeriod"}
	case c.TickInterval < 0:
		return c, &ConfigError{"TickInterval", "must be positive"}
	}
	return c, nil
}
