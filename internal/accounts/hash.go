package accounts

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters. The defaults are OWASP's minimum recommendation for
// Argon2id (Password Storage Cheat Sheet): 19 MiB of memory, two passes, one
// lane. Raising any of them is safe at any time: stored hashes keep their own
// parameters and are rehashed on the next successful sign-in.
const (
	DefaultMemoryKiB = 19 * 1024 // m: memory in KiB (19 MiB)
	DefaultTime      = 2         // t: passes over memory
	DefaultThreads   = 1         // p: lanes
	DefaultSaltLen   = 16        // bytes of random salt
	DefaultKeyLen    = 32        // bytes of derived key stored
)

// OWASP minimums; New refuses parameters weaker than these.
const (
	MinMemoryKiB = 19 * 1024
	MinTime      = 2
	MinThreads   = 1
)

// Bounds the PHC parser enforces, so that a tampered or corrupted hash string
// cannot make us allocate gigabytes or spin for minutes.
const (
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 20
	maxThreads   = 16
	minSaltLen   = 8
	maxSaltLen   = 64
	minKeyLen    = 16
	maxKeyLen    = 64
	maxPHCLen    = 256 // longest PHC string accepted
)

// ErrMalformedHash is returned for a password hash string that is not a PHC
// Argon2id string within the accepted bounds.
var ErrMalformedHash = errors.New("accounts: malformed password hash")

// Params are Argon2id parameters. They are stored inside every hash string.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint32 // lanes (parallelism)
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// DefaultParams returns the default Argon2id parameters: m=19456 KiB, t=2,
// p=1, a 16-byte salt and a 32-byte key (OWASP's minimum for Argon2id).
func DefaultParams() Params {
	return Params{
		Memory:  DefaultMemoryKiB,
		Time:    DefaultTime,
		Threads: DefaultThreads,
		SaltLen: DefaultSaltLen,
		KeyLen:  DefaultKeyLen,
	}
}

// Validate reports whether p is within the bounds the hash parser accepts.
// It does not check the OWASP minimum; see MeetsOWASP.
func (p Params) Validate() error {
	switch {
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("argon2id time %d outside [1, %d]", p.Time, maxTime)
	case p.Threads < 1 || p.Threads > maxThreads:
		return fmt.Errorf("argon2id threads %d outside [1, %d]", p.Threads, maxThreads)
	case p.Memory < 8*p.Threads || p.Memory > maxMemoryKiB:
		return fmt.Errorf("argon2id memory %d KiB outside [8*threads, %d]", p.Memory, maxMemoryKiB)
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Errorf("argon2id salt length %d outside [%d, %d]", p.SaltLen, minSaltLen, maxSaltLen)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("argon2id key length %d outside [%d, %d]", p.KeyLen, minKeyLen, maxKeyLen)
	}
	return nil
}

// MeetsOWASP reports whether p is at or above OWASP's Argon2id minimum
// (m=19 MiB, t=2, p=1) with at least a 16-byte salt and key.
func (p Params) MeetsOWASP() bool {
	return p.Memory >= MinMemoryKiB && p.Time >= MinTime && p.Threads >= MinThreads &&
		p.SaltLen >= 16 && p.KeyLen >= 16
}

// keyFunc derives an Argon2id key; argon2.IDKey in production.
type keyFunc func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte

// A Hasher hashes and verifies passwords with Argon2id, running at most a
// fixed number of hashes at once: each hash holds Params.Memory KiB, so the
// bound is also a bound on memory (slots × m).
type Hasher struct {
	params Params
	slots  chan struct{}
	key    keyFunc
	// onHash, if set, is called with +1 when a hash starts and -1 when it
	// ends (inside the semaphore); tests use it to observe concurrency.
	onHash func(delta int)
}

// NewHasher returns a Hasher producing hashes with p and running at most
// maxConcurrent hashes at once (zero means runtime.NumCPU()).
func NewHasher(p Params, maxConcurrent int) (*Hasher, error) {
	return newHasher(p, maxConcurrent, defaultKeyFunc)
}

func newHasher(p Params, maxConcurrent int, key keyFunc) (*Hasher, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if maxConcurrent < 0 {
		return nil, fmt.Errorf("%w: MaxConcurrentHashes %d < 0", ErrInvalidConfig, maxConcurrent)
	}
	if maxConcurrent == 0 {
		maxConcurrent = runtime.NumCPU()
	}
	return &Hasher{params: p, slots: make(chan struct{}, maxConcurrent), key: key}, nil
}

// Params returns the parameters new hashes are made with.
func (h *Hasher) Params() Params { return h.params }

// derive runs one Argon2id derivation, waiting for a free slot first. It
// returns ctx's error if ctx ends while waiting.
func (h *Hasher) derive(ctx context.Context, password string, salt []byte, p Params) ([]byte, error) {
	select {
	case h.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-h.slots }()
	if h.onHash != nil {
		h.onHash(+1)
		defer h.onHash(-1)
	}
	return h.key([]byte(password), salt, p.Time, p.Memory, uint8(p.Threads), p.KeyLen), nil
}

// Hash returns the PHC string of password under the Hasher's parameters with a
// fresh random salt.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, h.params.SaltLen)
	rand.Read(salt) // never fails (crypto/rand, Go 1.24+)
	key, err := h.derive(ctx, password, salt, h.params)
	if err != nil {
		return "", err
	}
	return encodePHC(h.params, salt, key), nil
}

// Verify reports whether password matches the PHC string encoded, and whether
// encoded was made with parameters other than the Hasher's (so the caller
// should store a fresh hash). The comparison is constant-time. It returns an
// error wrapping ErrMalformedHash for a bad hash string, or ctx's error.
func (h *Hasher) Verify(ctx context.Context, password, encoded string) (ok, needsRehash bool, err error) {
	p, salt, want, err := parsePHC(encoded)
	if err != nil {
		return false, false, err
	}
	got, err := h.derive(ctx, password, salt, p)
	if err != nil {
		return false, false, err
	}
	ok = subtle.ConstantTimeCompare(got, want) == 1
	return ok, p != h.params, nil
}

var b64 = base64.RawStdEncoding.Strict()

const phcPrefix = "$argon2id$v=19$"

// encodePHC formats a hash as the reference implementation does:
// $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>, with salt and
// key in standard base64 without padding.
func encodePHC(p Params, salt, key []byte) string {
	return fmt.Sprintf("%sm=%d,t=%d,p=%d$%s$%s", phcPrefix, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}

// parsePHC parses a PHC Argon2id string strictly: exactly the form
// encodePHC produces (canonical decimals, canonical unpadded base64, no
// optional fields), with every parameter within Params.Validate's bounds.
// encodePHC(parsePHC(s)) == s for every accepted s.
func parsePHC(s string) (p Params, salt, key []byte, err error) {
	bad := func(why string) (Params, []byte, []byte, error) {
		return Params{}, nil, nil, fmt.Errorf("%w: %s", ErrMalformedHash, why)
	}
	if len(s) > maxPHCLen {
		return bad("too long")
	}
	if strings.ContainsAny(s, "\r\n") { // base64 decoding would skip them
		return bad("line break")
	}
	rest, ok := strings.CutPrefix(s, phcPrefix)
	if !ok {
		return bad("not $argon2id$v=19$")
	}
	fields := strings.Split(rest, "$")
	if len(fields) != 3 {
		return bad("wrong number of fields")
	}
	kv := strings.Split(fields[0], ",")
	if len(kv) != 3 {
		return bad("want m, t and p")
	}
	var vals [3]uint32
	for i, name := range []string{"m=", "t=", "p="} {
		num, ok := strings.CutPrefix(kv[i], name)
		if !ok {
			return bad("want m, t and p in order")
		}
		v, ok := parseDecimal(num)
		if !ok {
			return bad("bad number")
		}
		vals[i] = v
	}
	p = Params{Memory: vals[0], Time: vals[1], Threads: vals[2]}
	if salt, err = b64.DecodeString(fields[1]); err != nil {
		return bad("bad salt encoding")
	}
	if key, err = b64.DecodeString(fields[2]); err != nil {
		return bad("bad key encoding")
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	if err := p.Validate(); err != nil {
		return bad(err.Error())
	}
	return p, salt, key, nil
}

// parseDecimal parses a canonical unsigned decimal: digits only, no sign, no
// leading zero, at most 10 digits, fitting in uint32.
func parseDecimal(s string) (uint32, bool) {
	if s == "" || len(s) > 10 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 10, 32)
	return uint32(v), err == nil
}

// defaultKeyFunc is Argon2id from golang.org/x/crypto.
func defaultKeyFunc(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
	return argon2.IDKey(password, salt, time, memory, threads, keyLen)
}
