package accounts

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"
)

// retryAfter returns the RetryAfter of a *ThrottledError, or fails.
func retryAfter(t *testing.T, err error) time.Duration {
	t.Helper()
	te, ok := errors.AsType[*ThrottledError](err)
	if !ok {
		t.Fatalf("err = %v, want *ThrottledError", err)
	}
	if !errors.Is(err, ErrThrottled) {
		t.Fatal("*ThrottledError does not match ErrThrottled")
	}
	return te.RetryAfter
}

func TestIPRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.IPRate, c.IPBurst = 1, 3 })
	e.register(t, "alice@example.com", pw)
	a := Source{IP: "198.51.100.1"}
	for i := range 3 { // distinct login IDs: only the IP limit applies
		if _, err := e.svc.Authenticate(ctx, fmt.Sprintf("u%d@example.com", i), pw, a); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	e.hash.calls.Store(0)
	_, err := e.svc.Authenticate(ctx, "alice@example.com", pw, a)
	if d := retryAfter(t, err); d != time.Second {
		t.Errorf("RetryAfter = %s, want 1s", d)
	}
	if e.hash.calls.Load() != 0 {
		t.Error("IP-throttled attempt hashed")
	}
	ev := e.sink.last(t)
	if ev.Fields["reason"] != ReasonIPRate || ev.IP != a.IP || ev.Subject != "" {
		t.Errorf("event %+v", ev)
	}
	// Another IP is unaffected.
	if _, err := e.svc.Authenticate(ctx, "alice@example.com", pw, Source{IP: "198.51.100.2"}); err != nil {
		t.Errorf("other IP: %v", err)
	}
	// Half a second later, still throttled; a second later, one more attempt.
	e.clock.Advance(500 * time.Millisecond)
	_, err = e.svc.Authenticate(ctx, "alice@example.com", pw, a)
	if d := retryAfter(t, err); d != 500*time.Millisecond {
		t.Errorf("RetryAfter = %s, want 500ms", d)
	}
	e.clock.Advance(500 * time.Millisecond)
	if _, err := e.svc.Authenticate(ctx, "alice@example.com", pw, a); err != nil {
		t.Errorf("after refill: %v", err)
	}
	_, err = e.svc.Authenticate(ctx, "alice@example.com", pw, a)
	retryAfter(t, err)
}

func lockoutEnv(t *testing.T) *env {
	return newEnv(t, func(c *Config) {
		c.FailuresBeforeLockout = 3
		c.LockoutBase = time.Second
		c.MaxLockout = 4 * time.Second
		c.DeviceTokenTTL = time.Hour
	})
}

// lockoutTrace runs a fixed sequence of attempts against login and returns
// what each returned: "ok", "invalid" or "locked <RetryAfter>".
func lockoutTrace(t *testing.T, e *env, login, password string) []string {
	t.Helper()
	var out []string
	try := func(p string) {
		_, err := e.svc.Authenticate(ctx, login, p, Source{IP: "203.0.113.5"})
		switch te, ok := errors.AsType[*ThrottledError](err); {
		case err == nil:
			out = append(out, "ok")
		case errors.Is(err, ErrInvalidCredentials):
			out = append(out, "invalid")
		case ok:
			out = append(out, "locked "+te.RetryAfter.String())
		default:
			t.Fatalf("unexpected error %v", err)
		}
	}
	for range 3 {
		try("wrong password")
	}
	try(password)                    // locked 1s
	e.clock.Advance(time.Second)     // lock over
	try("wrong password")            // 4th failure: 2s
	try(password)                    // locked 2s
	e.clock.Advance(2 * time.Second) //
	try("wrong password")            // 5th: 4s
	e.clock.Advance(4 * time.Second) //
	try("wrong password")            // 6th: 8s, capped at 4s
	try("wrong password")            // locked 4s
	e.clock.Advance(3 * time.Second) //
	try(password)                    // locked 1s
	e.clock.Advance(time.Second)     //
	try(password)                    // success (or invalid if unknown)
	try("wrong password")            // count reset: no lock
	try("wrong password")            //
	try("wrong password")            // 3rd failure after reset: locked 1s
	try(password)                    //
	return out
}

func TestLockoutDoublesCapsExpiresAndResets(t *testing.T) {
	e := lockoutEnv(t)
	e.register(t, "alice@example.com", pw)
	got := lockoutTrace(t, e, "alice@example.com", pw)
	want := []string{
		"invalid", "invalid", "invalid", "locked 1s",
		"invalid", "locked 2s",
		"invalid",
		"invalid", "locked 4s",
		"locked 1s",
		"ok",
		"invalid", "invalid", "invalid", "locked 1s",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("trace\n got %v\nwant %v", got, want)
	}
}

// An unknown login ID locks out exactly like a real one (until the point
// where the real one's correct password succeeds), so the lockout does not
// tell an attacker which accounts exist.
func TestUnknownLoginIDsLockTheSame(t *testing.T) {
	known := lockoutEnv(t)
	known.register(t, "alice@example.com", pw)
	unknown := lockoutEnv(t)
	k := lockoutTrace(t, known, "alice@example.com", "wrong password too")
	u := lockoutTrace(t, unknown, "alice@example.com", pw)
	if fmt.Sprint(k) != fmt.Sprint(u) {
		t.Errorf("known and unknown login IDs differ:\n  known %v\nunknown %v", k, u)
	}
	if k[3] != "locked 1s" {
		t.Errorf("trace did not lock: %v", k)
	}
}

// lockAccount fails sign-in from an attacker's IP until the login ID is locked.
func lockAccount(t *testing.T, e *env, login string) {
	t.Helper()
	for range 3 {
		e.svc.Authenticate(ctx, login, "attacker guess", Source{IP: "203.0.113.66"})
	}
	_, err := e.svc.Authenticate(ctx, login, pw, Source{IP: "203.0.113.66"})
	retryAfter(t, err)
}

// While an attacker keeps the account locked, the customer with a device
// token from an earlier sign-in still signs in; a device has its own limit.
func TestDeviceTokenBypassesAccountLockout(t *testing.T) {
	e := lockoutEnv(t)
	a := e.register(t, "alice@example.com", pw)
	if _, err := e.svc.Authenticate(ctx, "alice@example.com", pw, Source{IP: "192.0.2.10"}); err != nil {
		t.Fatal(err)
	}
	tok := e.svc.IssueDeviceToken(a.ID)
	phone := Source{IP: "192.0.2.10", DeviceToken: tok}

	lockAccount(t, e, "alice@example.com")
	got, err := e.svc.Authenticate(ctx, "alice@example.com", pw, phone)
	if err != nil || got.ID != a.ID {
		t.Fatalf("customer with device token locked out: %v", err)
	}
	if ev := e.sink.last(t); ev.Fields["device"] != true {
		t.Errorf("event %+v lacks device=true", ev)
	}
	// The attacker is still locked out.
	_, err = e.svc.Authenticate(ctx, "alice@example.com", pw, Source{IP: "203.0.113.66"})
	retryAfter(t, err)

	// The device's own failures lock the device, not the account-wide state
	// or other devices.
	for range 3 {
		if _, err := e.svc.Authenticate(ctx, "alice@example.com", "typo typo", phone); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatal(err)
		}
	}
	_, err = e.svc.Authenticate(ctx, "alice@example.com", pw, phone)
	if d := retryAfter(t, err); d != time.Second {
		t.Errorf("device lock %s, want 1s", d)
	}
	laptop := Source{IP: "192.0.2.11", DeviceToken: e.svc.IssueDeviceToken(a.ID)}
	if _, err := e.svc.Authenticate(ctx, "alice@example.com", pw, laptop); err != nil {
		t.Errorf("second device: %v", err)
	}
}

func TestBadDeviceTokenDoesNotBypass(t *testing.T) {
	e := lockoutEnv(t)
	a := e.register(t, "alice@example.com", pw)
	b := e.register(t, "bob@example.com", pw)
	expired := e.svc.IssueDeviceToken(a.ID)
	e.clock.Advance(time.Hour) // DeviceTokenTTL
	valid := e.svc.IssueDeviceToken(a.ID)
	raw, _ := base64.RawURLEncoding.DecodeString(valid)
	tampered := func(i int) string {
		r := append([]byte(nil), raw...)
		r[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(r)
	}
	other, err := newService(newFakeStore(), &recorder{}, Config{Params: testParams}, options{allowWeakParams: true})
	if err != nil {
		t.Fatal(err)
	}
	lockAccount(t, e, "alice@example.com")
	for name, tok := range map[string]string{
		"expired":          expired,
		"other account's":  e.svc.IssueDeviceToken(b.ID),
		"other key's":      other.IssueDeviceToken(a.ID),
		"tampered version": tampered(0),
		"tampered id":      tampered(5),
		"tampered expiry":  tampered(20),
		"tampered mac":     tampered(len(raw) - 1),
		"truncated":        valid[:len(valid)-2],
		"padded":           valid + "==",
		"garbage":          "not a token",
		"with newline":     valid[:10] + "\n" + valid[10:],
	} {
		_, err := e.svc.Authenticate(ctx, "alice@example.com", pw, Source{IP: "192.0.2.10", DeviceToken: tok})
		if _, ok := errors.AsType[*ThrottledError](err); !ok {
			t.Errorf("%s token: err = %v, want throttled", name, err)
		}
	}
	if _, err := e.svc.Authenticate(ctx, "alice@example.com", pw, Source{IP: "192.0.2.10", DeviceToken: valid}); err != nil {
		t.Errorf("valid token: %v", err)
	}
}

func TestDeviceKeyFromConfig(t *testing.T) {
	key := make([]byte, DeviceKeyLen)
	key[0] = 7
	mk := func() *Service {
		s, err := newService(newFakeStore(), &recorder{}, Config{Params: testParams, DeviceKey: key}, options{allowWeakParams: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s1, s2 := mk(), mk()
	key[0] = 8 // the Service keeps its own copy
	now := time.Now()
	if _, ok := s2.dev.verify("acc_x", s1.IssueDeviceToken("acc_x"), now); !ok {
		t.Error("token from one node refused by another with the same key")
	}
}

// Concurrent attempts cannot overshoot the lock: with 3 failures to go,
// only 3 attempts are admitted at once.
func TestThrottleInFlightCap(t *testing.T) {
	c, _ := Config{FailuresBeforeLockout: 3}.withDefaults(true)
	th := newThrottle(c)
	now := time.Unix(1e9, 0)
	var admitted []*lockState
	for range 3 {
		st, _, ok := th.begin("k", now)
		if !ok {
			t.Fatal("refused below the cap")
		}
		admitted = append(admitted, st)
	}
	if _, _, ok := th.begin("k", now); ok {
		t.Fatal("admitted a 4th concurrent attempt")
	}
	for _, st := range admitted {
		th.end("k", st, now, outcomeFailed)
	}
	if _, d, ok := th.begin("k", now); ok || d != DefaultLockoutBase {
		t.Fatalf("after 3 failures: admitted %v, retry %s", ok, d)
	}
	// After the lock, one attempt at a time.
	later := now.Add(DefaultLockoutBase)
	st, _, ok := th.begin("k", later)
	if !ok {
		t.Fatal("refused after the lock")
	}
	if _, _, ok := th.begin("k", later); ok {
		t.Fatal("two attempts in flight after a lock")
	}
	th.end("k", st, later, outcomeAbandoned)
	if _, _, ok := th.begin("k", later); !ok {
		t.Fatal("abandoned attempt kept its slot")
	}
}

func TestFailuresForgottenAfterTTL(t *testing.T) {
	c, _ := Config{FailuresBeforeLockout: 3, FailureTTL: time.Hour}.withDefaults(true)
	th := newThrottle(c)
	now := time.Unix(1e9, 0)
	fail := func() {
		st, _, ok := th.begin("k", now)
		if !ok {
			t.Fatal("refused")
		}
		th.end("k", st, now, outcomeFailed)
	}
	fail()
	fail()
	now = now.Add(time.Hour)
	fail()
	fail()
	if _, _, ok := th.begin("k", now); !ok {
		t.Fatal("old failures still counted after FailureTTL")
	}
}

func TestLockDelay(t *testing.T) {
	th := &throttle{base: time.Second, max: 15 * time.Minute}
	for n, want := range map[int]time.Duration{
		0: time.Second, 1: 2 * time.Second, 9: 512 * time.Second, 10: 15 * time.Minute, 1000: 15 * time.Minute,
	} {
		if got := th.lockDelay(n); got != want {
			t.Errorf("lockDelay(%d) = %s, want %s", n, got, want)
		}
	}
}

// A flood of distinct IPs and login IDs costs bounded memory.
func TestThrottleTablesBounded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxTrackedIPs, c.MaxTrackedLogins = 10, 10 })
	for i := range 50 {
		e.svc.Authenticate(ctx, fmt.Sprintf("u%d@example.com", i), pw, Source{IP: fmt.Sprintf("10.0.0.%d", i)})
	}
	if n, m := e.svc.th.ips.Len(), e.svc.th.locks.Len(); n > 10 || m > 10 {
		t.Fatalf("tables hold %d IPs and %d login IDs, bound 10", n, m)
	}
}

// The device-token decoder is strict: only tokens the key made, in
// canonical encoding, are accepted, and nothing panics.
func FuzzDeviceToken(f *testing.F) {
	d := deviceTokens{key: make(DeviceKey, DeviceKeyLen), ttl: time.Hour}
	now := time.Unix(1_700_000_000, 0)
	// A fixed token (issue picks a random device ID, and fuzz workers must
	// agree on which token is the valid one).
	body := make([]byte, deviceBodyLen)
	body[0] = deviceTokenVersion
	body[1] = 42
	binary.BigEndian.PutUint64(body[1+deviceIDLen:], uint64(now.Add(time.Minute).Unix()))
	valid := base64.RawURLEncoding.EncodeToString(append(body, d.mac("acc_x", body)...))
	if _, ok := d.verify("acc_x", valid, now); !ok {
		f.Fatal("hand-made token refused")
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-1] + "A")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		id, ok := d.verify("acc_x", tok, now)
		if !ok {
			return
		}
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || base64.RawURLEncoding.EncodeToString(raw) != tok || len(id) != 2*deviceIDLen {
			t.Fatalf("accepted non-canonical token %q", tok)
		}
		if tok != valid {
			t.Fatalf("accepted a token the key did not issue: %q", tok)
		}
	})
}
