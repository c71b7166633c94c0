package accounts

import (
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// Defaults for Config. A zero field means its default.
const (
	// DefaultMaxConcurrentHashes is 0, meaning runtime.NumCPU(). Each hash
	// holds Params.Memory KiB, so memory for hashing is bounded by
	// slots × 19 MiB at the default parameters.
	DefaultMaxConcurrentHashes = 0
	// DefaultIPRate and DefaultIPBurst bound sign-in attempts per source IP:
	// a burst of 20, refilled at 10 per second.
	DefaultIPRate  rate.Limit = 10
	DefaultIPBurst int        = 20
	// DefaultFailuresBeforeLockout consecutive failures lock a login ID (or
	// a device) for DefaultLockoutBase, doubling per further failure up to
	// DefaultMaxLockout.
	DefaultFailuresBeforeLockout = 5
	DefaultLockoutBase           = time.Second
	DefaultMaxLockout            = 15 * time.Minute
	// DefaultFailureTTL: failures are forgotten after this long without one.
	DefaultFailureTTL = 24 * time.Hour
	// DefaultMaxTrackedIPs and DefaultMaxTrackedLogins bound the in-memory
	// throttling tables (least recently used entries are evicted).
	DefaultMaxTrackedIPs    = 100_000
	DefaultMaxTrackedLogins = 100_000
	// DefaultDeviceTokenTTL is how long a device token lets its holder skip
	// an account's lockout after a successful sign-in.
	DefaultDeviceTokenTTL = 90 * 24 * time.Hour
	// DefaultListLimit and MaxListLimit bound Service.List pages.
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// Config configures a Service. The zero Config is the secure default.
type Config struct {
	// Params are the Argon2id parameters for new hashes; the zero value
	// means DefaultParams(). New refuses parameters below OWASP's minimum.
	Params Params
	// MaxConcurrentHashes bounds hashes running at once; 0 means
	// runtime.NumCPU().
	MaxConcurrentHashes int
	// IPRate and IPBurst make the per-source-IP token bucket.
	IPRate  rate.Limit
	IPBurst int
	// FailuresBeforeLockout, LockoutBase and MaxLockout shape the lockout:
	// after FailuresBeforeLockout consecutive failures the login ID is
	// locked for LockoutBase, doubling per further failure, capped at
	// MaxLockout. Sources with a valid device token for the account are
	// exempt from the login ID's lock and have their own, identical one.
	FailuresBeforeLockout int
	LockoutBase           time.Duration
	MaxLockout            time.Duration
	// FailureTTL is how long failures are remembered without a new one.
	FailureTTL time.Duration
	// MaxTrackedIPs and MaxTrackedLogins bound the throttling tables.
	MaxTrackedIPs    int
	MaxTrackedLogins int
	// DeviceKey is the HMAC key for device tokens, DeviceKeyLen bytes. If
	// empty, a random key is made per process: device tokens then stop
	// working on restart and across nodes.
	DeviceKey DeviceKey
	// DeviceTokenTTL is the lifetime of a device token.
	DeviceTokenTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// withDefaults returns c with zero fields set to their defaults, or an error
// wrapping ErrInvalidConfig.
func (c Config) withDefaults(allowWeak bool) (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.Params == (Params{}) {
		c.Params = DefaultParams()
	}
	if err := c.Params.Validate(); err != nil {
		return bad("%v", err)
	}
	if !allowWeak && !c.Params.MeetsOWASP() {
		return bad("Argon2id parameters below OWASP minimum (m=%d KiB, t=%d, p=%d, 16-byte salt and key)", MinMemoryKiB, MinTime, MinThreads)
	}
	setInt := func(p *int, def int, name string) error {
		switch {
		case *p < 0:
			return fmt.Errorf("%w: %s %d < 0", ErrInvalidConfig, name, *p)
		case *p == 0:
			*p = def
		}
		return nil
	}
	setDur := func(p *time.Duration, def time.Duration, name string) error {
		switch {
		case *p < 0:
			return fmt.Errorf("%w: %s %s < 0", ErrInvalidConfig, name, *p)
		case *p == 0:
			*p = def
		}
		return nil
	}
	for _, err := range []error{
		setInt(&c.MaxConcurrentHashes, DefaultMaxConcurrentHashes, "MaxConcurrentHashes"),
		setInt(&c.IPBurst, DefaultIPBurst, "IPBurst"),
		setInt(&c.FailuresBeforeLockout, DefaultFailuresBeforeLockout, "FailuresBeforeLockout"),
		setInt(&c.MaxTrackedIPs, DefaultMaxTrackedIPs, "MaxTrackedIPs"),
		setInt(&c.MaxTrackedLogins, DefaultMaxTrackedLogins, "MaxTrackedLogins"),
		setDur(&c.LockoutBase, DefaultLockoutBase, "LockoutBase"),
		setDur(&c.MaxLockout, DefaultMaxLockout, "MaxLockout"),
		setDur(&c.FailureTTL, DefaultFailureTTL, "FailureTTL"),
		setDur(&c.DeviceTokenTTL, DefaultDeviceTokenTTL, "DeviceTokenTTL"),
	} {
		if err != nil {
			return Config{}, err
		}
	}
	switch {
	case c.IPRate < 0:
		return bad("IPRate %v < 0", c.IPRate)
	case c.IPRate == 0:
		c.IPRate = DefaultIPRate
	}
	if c.LockoutBase > c.MaxLockout {
		return bad("LockoutBase %s > MaxLockout %s", c.LockoutBase, c.MaxLockout)
	}
	if n := len(c.DeviceKey); n != 0 && n != DeviceKeyLen {
		return bad("DeviceKey has %d bytes, want %d", n, DeviceKeyLen)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}
