package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
)

const pw = "correct horse battery"

var ctx = context.Background()

func TestRegister(t *testing.T) {
	e := newEnv(t, nil)
	a, err := e.svc.Register(ctx, " Min.Jun@Example.KR ", " 김민준 ", pw, "self")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^acc_[a-z2-7]{26}$`).MatchString(a.ID) {
		t.Errorf("ID %q not acc_ + 26 base32 characters", a.ID)
	}
	if a.LoginID != "min.jun@example.kr" || a.Name != "김민준" || a.PasswordHash != "" || !a.CreatedAt.Equal(e.clock.Now()) {
		t.Errorf("returned %+v", a)
	}
	stored := e.st.get(t, a.ID)
	if !strings.HasPrefix(stored.PasswordHash, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("stored hash %q", stored.PasswordHash)
	}
	ev := e.sink.last(t)
	if ev.Type != EventAccountCreated || ev.Class != event.ClassAdmin || ev.Actor != "self" || ev.Subject != a.ID {
		t.Errorf("event %+v", ev)
	}

	_, err = e.svc.Register(ctx, "Min.Jun@EXAMPLE.kr", "Other", pw, "self")
	if !errors.Is(err, ErrLoginIDTaken) || !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate login ID: %v", err)
	}
	_, err = e.svc.Register(ctx, "MIN.JUN@example.kr", "Other", pw, "self")
	if !errors.Is(err, ErrLoginIDTaken) {
		t.Errorf("login IDs are case-insensitive, so this is a duplicate: %v", err)
	}

	for name, args := range map[string][4]string{
		"login_id": {"not-an-address", "N", pw, "self"},
		"name":     {"x@example.com", "", pw, "self"},
		"password": {"x@example.com", "N", "short", "self"},
		"actor":    {"x@example.com", "N", pw, ""},
	} {
		_, err := e.svc.Register(ctx, args[0], args[1], args[2], args[3])
		if ie, ok := errors.AsType[*InputError](err); !ok || ie.Field != name {
			t.Errorf("bad %s: err = %v", name, err)
		}
	}
}

func TestAuthenticate(t *testing.T) {
	e := newEnv(t, nil)
	a := e.register(t, "alice@example.com", pw)
	src := Source{IP: "192.0.2.7", UserAgent: "Mozilla/5.0"}

	got, err := e.svc.Authenticate(ctx, "  alice@EXAMPLE.com", pw, src)
	if err != nil || got.ID != a.ID || got.PasswordHash != "" {
		t.Fatalf("Authenticate = %+v, %v", got, err)
	}
	ev := e.sink.last(t)
	if ev.Type != EventLoginSucceeded || ev.Class != event.ClassAuthn || ev.Subject != a.ID || ev.IP != src.IP || ev.Fields["user_agent"] != "Mozilla/5.0" {
		t.Errorf("success event %+v", ev)
	}

	_, err = e.svc.Authenticate(ctx, "alice@example.com", "wrong password", src)
	if !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	ev = e.sink.last(t)
	if ev.Type != EventLoginFailed || ev.Fields["reason"] != ReasonBadPassword || ev.Subject != a.ID {
		t.Errorf("failure event %+v", ev)
	}

	_, err = e.svc.Authenticate(ctx, "nobody@example.com", pw, src)
	if !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("unknown account: %v", err)
	}
	ev = e.sink.last(t)
	if ev.Fields["reason"] != ReasonUnknownAccount || ev.Subject != "" || ev.Actor != "" || ev.Fields["login_id_hash"] == "" {
		t.Errorf("unknown-account event %+v", ev)
	}

	if _, err := e.svc.Authenticate(ctx, "not a login", pw, src); !isInputError(err, "login_id") {
		t.Errorf("malformed login ID: %v", err)
	}
	if _, err := e.svc.Authenticate(ctx, "alice@example.com", strings.Repeat("x", 257), src); !isInputError(err, "password") {
		t.Errorf("over-long password: %v", err)
	}

	// No event carries the password or the login ID.
	for _, ev := range e.sink.all() {
		s := fmt.Sprintf("%+v", ev)
		if strings.Contains(s, pw) || strings.Contains(s, "wrong password") || strings.Contains(s, "alice@") || strings.Contains(s, "nobody@") {
			t.Errorf("event leaks a secret or address: %s", s)
		}
	}
}

func isInputError(err error, field string) bool {
	ie, ok := errors.AsType[*InputError](err)
	return ok && ie.Field == field
}

// Unknown login IDs, wrong passwords and disabled accounts all cost exactly
// one hash with the current parameters, so they take the same time; a
// locked-out attempt costs none.
func TestEqualWorkForUnknownWrongAndDisabled(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.FailuresBeforeLockout = 3 })
	e.register(t, "alice@example.com", pw)
	dis := e.register(t, "dave@example.com", pw)
	if err := e.svc.Disable(ctx, dis.ID, "op", "test"); err != nil {
		t.Fatal(err)
	}
	src := Source{IP: "192.0.2.1"}
	for _, tc := range []struct {
		name, login, password, reason string
	}{
		{"unknown", "nobody@example.com", pw, ReasonUnknownAccount},
		{"wrong password", "alice@example.com", "wrong password", ReasonBadPassword},
		{"disabled, right password", "dave@example.com", pw, ReasonDisabled},
	} {
		e.hash.calls.Store(0)
		_, err := e.svc.Authenticate(ctx, tc.login, tc.password, src)
		if !errors.Is(err, ErrInvalidCredentials) || err.Error() != ErrInvalidCredentials.Error() {
			t.Errorf("%s: err = %v, want exactly ErrInvalidCredentials", tc.name, err)
		}
		if n := e.hash.calls.Load(); n != 1 {
			t.Errorf("%s: %d hashes, want 1", tc.name, n)
		}
		if got := e.hash.last; got != testParams {
			t.Errorf("%s: hashed with %+v, want current params %+v", tc.name, got, testParams)
		}
		if r := e.sink.last(t).Fields["reason"]; r != tc.reason {
			t.Errorf("%s: reason %v, want %s", tc.name, r, tc.reason)
		}
	}
	// Lock the unknown login ID, then check a locked attempt does no work.
	for range 2 {
		e.svc.Authenticate(ctx, "nobody@example.com", pw, src)
	}
	e.hash.calls.Store(0)
	if _, err := e.svc.Authenticate(ctx, "nobody@example.com", pw, src); !errors.Is(err, ErrThrottled) {
		t.Fatalf("locked: %v", err)
	}
	if n := e.hash.calls.Load(); n != 0 {
		t.Errorf("locked attempt did %d hashes", n)
	}
}

func TestRehashOnLogin(t *testing.T) {
	e := newEnv(t, nil)
	old, err := NewHasher(Params{Memory: 32, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	if err != nil {
		t.Fatal(err)
	}
	oldHash := must(old.Hash(ctx, pw))
	a := store.Account{ID: "acc_old", LoginID: "old@example.com", Name: "Old", PasswordHash: oldHash}
	if err := e.st.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authenticate(ctx, "old@example.com", "wrong password", Source{}); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatal(err)
	}
	if e.st.get(t, a.ID).PasswordHash != oldHash {
		t.Fatal("rehashed after a failed sign-in")
	}
	if _, err := e.svc.Authenticate(ctx, "old@example.com", pw, Source{}); err != nil {
		t.Fatal(err)
	}
	newHash := e.st.get(t, a.ID).PasswordHash
	if p, _, _, err := parsePHC(newHash); err != nil || p != testParams {
		t.Fatalf("after sign-in, hash %q has params %+v (%v), want %+v", newHash, p, err, testParams)
	}
	if ev := e.sink.last(t); ev.Fields["rehashed"] != true {
		t.Errorf("event %+v lacks rehashed=true", ev)
	}
	updates := e.st.updates
	if _, err := e.svc.Authenticate(ctx, "old@example.com", pw, Source{}); err != nil {
		t.Fatal(err)
	}
	if e.st.updates != updates {
		t.Error("rehashed a current hash")
	}
	if _, ok := e.sink.last(t).Fields["rehashed"]; ok {
		t.Error("rehashed field on a sign-in without rehash")
	}
}

func TestCorruptStoredHash(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.st.CreateAccount(ctx, store.Account{ID: "acc_bad", LoginID: "bad@example.com", PasswordHash: "$argon2id$v=19$m=99999999,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA"}); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.Authenticate(ctx, "bad@example.com", pw, Source{})
	if !errors.Is(err, ErrInvalidCredentials) || e.hash.calls.Load() != 1 || e.sink.last(t).Fields["reason"] != ReasonCorruptHash {
		t.Fatalf("err %v, %d hashes, event %+v", err, e.hash.calls.Load(), e.sink.last(t))
	}
}

func TestChangePassword(t *testing.T) {
	e := newEnv(t, nil)
	a := e.register(t, "alice@example.com", pw)
	e.st.tokens[a.ID] = 3
	src := Source{IP: "192.0.2.9"}

	if err := e.svc.ChangePassword(ctx, a.ID, "wrong password", "new password 1", src); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("wrong old password: %v", err)
	}
	if err := e.svc.ChangePassword(ctx, a.ID, pw, "short", src); !isInputError(err, "password") {
		t.Fatalf("bad new password: %v", err)
	}
	if err := e.svc.ChangePassword(ctx, a.ID, pw, "ALICE@example.com", src); !isInputError(err, "password") {
		t.Fatalf("login ID as password: %v", err)
	}
	if len(e.st.revokes) != 0 {
		t.Fatal("revoked without a change")
	}
	if err := e.svc.ChangePassword(ctx, a.ID, pw, "new password 1", src); err != nil {
		t.Fatal(err)
	}
	if len(e.st.revokes) != 1 || e.st.revokes[0] != a.ID {
		t.Errorf("RevokeSubject calls %v, want [%s]", e.st.revokes, a.ID)
	}
	ev := e.sink.last(t)
	if ev.Type != EventPasswordChanged || ev.Subject != a.ID || ev.Actor != a.ID || ev.Fields["revoked"] != 3 {
		t.Errorf("event %+v", ev)
	}
	if _, err := e.svc.Authenticate(ctx, "alice@example.com", pw, src); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("old password still works: %v", err)
	}
	if _, err := e.svc.Authenticate(ctx, "alice@example.com", "new password 1", src); err != nil {
		t.Errorf("new password: %v", err)
	}
	if err := e.svc.ChangePassword(ctx, "acc_missing", pw, "new password 2", src); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing account: %v", err)
	}
}

func TestSetPassword(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.FailuresBeforeLockout = 2 })
	a := e.register(t, "alice@example.com", pw)
	for range 2 {
		e.svc.Authenticate(ctx, "alice@example.com", "wrong password", Source{})
	}
	if _, err := e.svc.Authenticate(ctx, "alice@example.com", pw, Source{}); !errors.Is(err, ErrThrottled) {
		t.Fatalf("want locked: %v", err)
	}
	if err := e.svc.SetPassword(ctx, a.ID, "reset password", ""); !isInputError(err, "actor") {
		t.Fatalf("no actor: %v", err)
	}
	if err := e.svc.SetPassword(ctx, a.ID, "reset password", "op:kim"); err != nil {
		t.Fatal(err)
	}
	if len(e.st.revokes) != 1 || e.st.revokes[0] != a.ID {
		t.Errorf("RevokeSubject calls %v", e.st.revokes)
	}
	ev := e.sink.last(t)
	if ev.Type != EventPasswordSet || ev.Class != event.ClassAdmin || ev.Actor != "op:kim" || ev.Subject != a.ID {
		t.Errorf("event %+v", ev)
	}
	if _, err := e.svc.Authenticate(ctx, "alice@example.com", "reset password", Source{}); err != nil {
		t.Errorf("after reset (lockout cleared): %v", err)
	}
}

func TestDisable(t *testing.T) {
	e := newEnv(t, nil)
	a := e.register(t, "alice@example.com", pw)
	e.st.tokens[a.ID] = 2
	if err := e.svc.Disable(ctx, a.ID, "", "x"); !isInputError(err, "actor") {
		t.Fatalf("no actor: %v", err)
	}
	if err := e.svc.Disable(ctx, a.ID, "op:kim", "bad\x00reason"); !isInputError(err, "reason") {
		t.Fatalf("bad reason: %v", err)
	}
	if err := e.svc.Disable(ctx, a.ID, "op:kim", "fraud report #12"); err != nil {
		t.Fatal(err)
	}
	if !e.st.get(t, a.ID).Disabled() {
		t.Fatal("not disabled")
	}
	if len(e.st.revokes) != 1 || e.st.revokes[0] != a.ID {
		t.Errorf("RevokeSubject calls %v", e.st.revokes)
	}
	ev := e.sink.last(t)
	if ev.Type != EventAccountDisabled || ev.Actor != "op:kim" || ev.Subject != a.ID || ev.Fields["reason"] != "fraud report #12" || ev.Fields["revoked"] != 2 {
		t.Errorf("event %+v", ev)
	}
	if _, err := e.svc.Authenticate(ctx, "alice@example.com", pw, Source{}); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("disabled account signed in: %v", err)
	}
	if err := e.svc.ChangePassword(ctx, a.ID, pw, "new password 1", Source{}); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("disabled account changed password: %v", err)
	}
	if err := e.svc.Disable(ctx, "acc_missing", "op:kim", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing account: %v", err)
	}
}

func TestAccountAndList(t *testing.T) {
	e := newEnv(t, nil)
	var ids []string
	for i := range 5 {
		ids = append(ids, e.register(t, fmt.Sprintf("u%d@example.com", i), pw).ID)
	}
	a, err := e.svc.Account(ctx, ids[0])
	if err != nil || a.ID != ids[0] || a.PasswordHash != "" {
		t.Fatalf("Account = %+v, %v", a, err)
	}
	if _, err := e.svc.Account(ctx, "acc_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	var seen []string
	after := ""
	for {
		page, err := e.svc.List(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, a := range page {
			if a.PasswordHash != "" {
				t.Fatal("List returns password hashes")
			}
			seen = append(seen, a.ID)
		}
		after = page[len(page)-1].ID
	}
	if len(seen) != 5 {
		t.Fatalf("listed %v", seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i-1] >= seen[i] {
			t.Fatalf("not in ID order: %v", seen)
		}
	}
	for _, bad := range []int{-1, MaxListLimit + 1} {
		if _, err := e.svc.List(ctx, "", bad); !isInputError(err, "limit") {
			t.Errorf("limit %d: %v", bad, err)
		}
	}
	if page, err := e.svc.List(ctx, "", 0); err != nil || len(page) != 5 {
		t.Errorf("default limit: %d, %v", len(page), err)
	}
}

// If the success event cannot be recorded the sign-in fails; a failed
// sign-in still reports invalid credentials.
func TestEventSinkFailure(t *testing.T) {
	e := newEnv(t, nil)
	e.register(t, "alice@example.com", pw)
	boom := errors.New("sink down")
	e.sink.fail = boom
	if _, err := e.svc.Authenticate(ctx, "alice@example.com", pw, Source{}); !errors.Is(err, boom) {
		t.Errorf("success with sink down: %v", err)
	}
	_, err := e.svc.Authenticate(ctx, "alice@example.com", "wrong password", Source{})
	if !errors.Is(err, boom) || !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("failure with sink down: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	for name, cfg := range map[string]Config{
		"negative hashes":    {MaxConcurrentHashes: -1},
		"negative rate":      {IPRate: -1},
		"negative burst":     {IPBurst: -1},
		"negative failures":  {FailuresBeforeLockout: -1},
		"negative lockout":   {MaxLockout: -1},
		"base above max":     {LockoutBase: time.Hour, MaxLockout: time.Minute},
		"short device key":   {DeviceKey: make([]byte, 16)},
		"bad params":         {Params: Params{Memory: 64, Time: 0, Threads: 1, SaltLen: 16, KeyLen: 32}},
		"negative ttl":       {DeviceTokenTTL: -time.Second},
		"negative failure t": {FailureTTL: -time.Second},
	} {
		if _, err := newService(newFakeStore(), &recorder{}, cfg, options{allowWeakParams: true}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
	if _, err := newService(nil, &recorder{}, Config{Params: testParams}, options{allowWeakParams: true}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil store: %v", err)
	}
	c, err := Config{}.withDefaults(false)
	if err != nil {
		t.Fatal(err)
	}
	if c.Params != DefaultParams() || c.IPRate != DefaultIPRate || c.IPBurst != DefaultIPBurst ||
		c.FailuresBeforeLockout != DefaultFailuresBeforeLockout || c.MaxLockout != DefaultMaxLockout ||
		c.LockoutBase != DefaultLockoutBase || c.DeviceTokenTTL != DefaultDeviceTokenTTL || c.Now == nil {
		t.Errorf("defaults not applied: %+v", c)
	}
}

// Neither the device key nor the service's derived keys ever print.
func TestSecretsDoNotPrint(t *testing.T) {
	key := []byte(strings.Repeat("\xab", DeviceKeyLen))
	cfg := Config{Params: testParams, DeviceKey: key}
	svc, err := newService(newFakeStore(), &recorder{}, cfg, options{allowWeakParams: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		for name, v := range map[string]any{"config": cfg, "key": cfg.DeviceKey, "service": svc, "service value": *svc} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(strings.ToLower(out), "abab") || strings.Contains(out, "171") || strings.Contains(out, "\xab") {
				t.Errorf("%s printed with %s leaks the key: %s", name, verb, out)
			}
		}
	}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("cfg", "key", cfg.DeviceKey)
	if strings.Contains(strings.ToLower(b.String()), "abab") || strings.Contains(b.String(), "171") {
		t.Errorf("slog leaks the key: %s", b.String())
	}
}

// RegisterMany seeds accounts with one shared password hashed once, in
// batches each recorded by one event; a clash stores nothing of its batch;
// the accounts sign in.
func TestRegisterMany(t *testing.T) {
	e := newEnv(t, nil)
	var news []NewAccount
	for i := range 12_000 {
		news = append(news, NewAccount{LoginID: fmt.Sprintf("c%05d@drill.example", i), Name: fmt.Sprintf("고객 %d", i)})
	}
	as, err := e.svc.RegisterMany(ctx, news, pw, "drill")
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 12_000 || as[0].PasswordHash != "" || as[11_999].LoginID != "c11999@drill.example" {
		t.Fatalf("returned %d accounts, last %+v", len(as), as[len(as)-1])
	}
	if e.hash.calls.Load() != 1 {
		t.Errorf("%d hashes for one shared password", e.hash.calls.Load())
	}
	var seeded []event.Event
	for _, ev := range e.sink.all() {
		if ev.Type == EventAccountsSeeded {
			seeded = append(seeded, ev)
		}
	}
	if len(seeded) != 3 || seeded[0].Fields["count"] != int64(5000) || seeded[2].Fields["count"] != int64(2000) || seeded[0].Actor != "drill" {
		t.Fatalf("seeding events %+v", seeded)
	}
	if _, err := e.svc.Authenticate(ctx, "c07777@drill.example", pw, Source{IP: "192.0.2.1"}); err != nil {
		t.Fatalf("a seeded account cannot sign in: %v", err)
	}
	_, err = e.svc.RegisterMany(ctx, []NewAccount{{LoginID: "new@drill.example", Name: "N"}, {LoginID: "c00001@drill.example", Name: "N"}}, pw, "drill")
	if !errors.Is(err, ErrLoginIDTaken) {
		t.Fatalf("a clash: %v", err)
	}
	if _, err := e.st.AccountByLoginID(ctx, "new@drill.example"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("a clashing batch stored an account")
	}
	if _, err := e.svc.RegisterMany(ctx, news[:1], "short", "drill"); err == nil {
		t.Fatal("a short password was taken")
	}
}
