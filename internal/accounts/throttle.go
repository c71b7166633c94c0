package accounts

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/custos-dev/custos/internal/lru"
)

// throttle holds the in-memory attempt state of one node: a token bucket per
// source IP and failure counters per login ID and per (account, device).
// Both tables are bounded LRU maps, so a flood of distinct IPs or login IDs
// costs bounded memory; the price is that under such a flood the least
// recently used entries are forgotten. State is per node: several nodes
// behind a load balancer each throttle on their own until shared state
// arrives with the PostgreSQL store.
type throttle struct {
	mu sync.Mutex

	ipRate  rate.Limit
	ipBurst int
	ips     *lru.Map[string, *rate.Limiter]

	threshold int           // consecutive failures before a lock
	base      time.Duration // first lock; doubles per further failure
	max       time.Duration // cap on a single lock
	ttl       time.Duration // failures are forgotten after this long without one
	locks     *lru.Map[string, *lockState]
}

type lockState struct {
	failures    int // consecutive failures
	lastFailure time.Time
	lockedUntil time.Time
	inFlight    int // attempts admitted and not yet finished
}

const maxIPKeyBytes = 64 // longer IP strings are truncated (they can only merge buckets)

func newThrottle(c Config) *throttle {
	return &throttle{
		ipRate:    c.IPRate,
		ipBurst:   c.IPBurst,
		ips:       lru.New[string, *rate.Limiter](c.MaxTrackedIPs),
		threshold: c.FailuresBeforeLockout,
		base:      c.LockoutBase,
		max:       c.MaxLockout,
		ttl:       c.FailureTTL,
		locks:     lru.New[string, *lockState](c.MaxTrackedLogins),
	}
}

// allowIP takes one attempt from ip's bucket. If the bucket is empty it
// returns how long until it holds one again, and false.
func (t *throttle) allowIP(ip string, now time.Time) (time.Duration, bool) {
	if len(ip) > maxIPKeyBytes {
		ip = ip[:maxIPKeyBytes]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	lim, ok := t.ips.Get(ip)
	if !ok {
		lim = rate.NewLimiter(t.ipRate, t.ipBurst)
		t.ips.Put(ip, lim)
	}
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return t.max, false
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

// begin admits an attempt against key (a login ID, or an account and device)
// unless key is locked. While key has had fewer than threshold failures, at
// most threshold−failures attempts may be in flight at once, and only one
// after that, so concurrent guesses cannot overshoot the lock. An admitted
// attempt must be finished with end.
func (t *throttle) begin(key string, now time.Time) (*lockState, time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.locks.Get(key)
	if !ok {
		st = &lockState{}
		t.locks.Put(key, st)
	}
	if st.inFlight == 0 && st.failures > 0 && now.Sub(st.lastFailure) >= t.ttl {
		*st = lockState{}
	}
	if now.Before(st.lockedUntil) {
		return nil, st.lockedUntil.Sub(now), false
	}
	if st.inFlight >= max(1, t.threshold-st.failures) {
		return nil, t.base, false
	}
	st.inFlight++
	return st, 0, true
}

type outcome int

const (
	outcomeSucceeded outcome = iota
	outcomeFailed
	outcomeAbandoned // no password check happened (context ended)
)

// end records the outcome of an attempt begun on key. A success clears the
// key; a failure counts, and from the threshold-th consecutive failure on
// locks the key for base·2^(failures−threshold), capped at max.
func (t *throttle) end(key string, st *lockState, now time.Time, o outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st.inFlight--
	switch o {
	case outcomeAbandoned:
		return
	case outcomeSucceeded:
		st.failures, st.lastFailure, st.lockedUntil = 0, time.Time{}, time.Time{}
		if cur, ok := t.locks.Get(key); ok && cur == st && st.inFlight == 0 {
			t.locks.Remove(key)
		}
		return
	}
	st.failures++
	st.lastFailure = now
	if st.failures >= t.threshold {
		st.lockedUntil = now.Add(t.lockDelay(st.failures - t.threshold))
	}
	if cur, ok := t.locks.Get(key); !ok || cur != st {
		t.locks.Put(key, st) // evicted while in flight: keep the failure
	}
}

// lockDelay is base·2^n, capped at max.
func (t *throttle) lockDelay(n int) time.Duration {
	d := t.base
	for ; n > 0 && d < t.max; n-- {
		d *= 2
	}
	return min(d, t.max)
}

// reset forgets key's failures (an operator set a new password).
func (t *throttle) reset(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st, ok := t.locks.Get(key); ok && st.inFlight == 0 {
		t.locks.Remove(key)
	} else if ok {
		st.failures, st.lastFailure, st.lockedUntil = 0, time.Time{}, time.Time{}
	}
}
