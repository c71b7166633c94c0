package accounts

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/time/rate"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
)

// fakeStore is an in-memory Store with the semantics of the SQLite one:
// ErrConflict on a duplicate ID or login ID, ErrNotFound, DisableAccount
// keeping the first time, ListAccounts in ID order after a key.
type fakeStore struct {
	mu       sync.Mutex
	accounts map[string]store.Account // by ID
	tokens   map[string]int           // unexpired, unrevoked tokens per subject
	revokes  []string                 // subjects passed to RevokeSubject, in order
	updates  int                      // UpdatePasswordHash calls
}

var _ Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{accounts: map[string]store.Account{}, tokens: map[string]int{}}
}

func (f *fakeStore) CreateAccount(_ context.Context, a store.Account) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.accounts {
		if b.ID == a.ID || b.LoginID == a.LoginID {
			return fmt.Errorf("account: %w", store.ErrConflict)
		}
	}
	f.accounts[a.ID] = a
	return nil
}

func (f *fakeStore) CreateAccounts(ctx context.Context, as []store.Account) error {
	f.mu.Lock()
	for _, a := range as {
		for _, b := range f.accounts {
			if b.ID == a.ID || b.LoginID == a.LoginID {
				f.mu.Unlock()
				return fmt.Errorf("account: %w", store.ErrConflict)
			}
		}
	}
	f.mu.Unlock()
	for _, a := range as {
		if err := f.CreateAccount(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeStore) Account(_ context.Context, id string) (store.Account, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.accounts[id]
	if !ok {
		return store.Account{}, fmt.Errorf("account: %w", store.ErrNotFound)
	}
	return a, nil
}

func (f *fakeStore) AccountByLoginID(_ context.Context, loginID string) (store.Account, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.accounts {
		if a.LoginID == loginID {
			return a, nil
		}
	}
	return store.Account{}, fmt.Errorf("account: %w", store.ErrNotFound)
}

func (f *fakeStore) update(id string, fn func(*store.Account)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.accounts[id]
	if !ok {
		return fmt.Errorf("account: %w", store.ErrNotFound)
	}
	fn(&a)
	f.accounts[id] = a
	return nil
}

func (f *fakeStore) UpdatePasswordHash(_ context.Context, id, hash string, at time.Time) error {
	return f.update(id, func(a *store.Account) {
		a.PasswordHash, a.UpdatedAt = hash, at
		f.updates++
	})
}

func (f *fakeStore) DisableAccount(_ context.Context, id string, at time.Time) error {
	return f.update(id, func(a *store.Account) {
		if a.DisabledAt.IsZero() {
			a.DisabledAt = at
		}
		a.UpdatedAt = at
	})
}

func (f *fakeStore) ListAccounts(_ context.Context, after string, limit int) ([]store.Account, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.Account
	for _, a := range f.accounts {
		if a.ID > after {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b store.Account) int { return strings.Compare(a.ID, b.ID) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (f *fakeStore) RevokeSubject(_ context.Context, subject string, _ time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revokes = append(f.revokes, subject)
	n := f.tokens[subject]
	f.tokens[subject] = 0
	return n, nil
}

func (f *fakeStore) get(t *testing.T, id string) store.Account {
	t.Helper()
	a, err := f.Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// recorder is an event.Sink keeping every event.
type recorder struct {
	mu     sync.Mutex
	events []event.Event
	fail   error // returned by Emit if set
}

func (r *recorder) Emit(_ context.Context, e event.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) all() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) last(t *testing.T) event.Event {
	t.Helper()
	es := r.all()
	if len(es) == 0 {
		t.Fatal("no events")
	}
	return es[len(es)-1]
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testParams are tiny Argon2id parameters so tests run fast.
var testParams = Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// counter is an Argon2id key function that counts calls and remembers the
// parameters of the last one.
type counter struct {
	calls atomic.Int64
	mu    sync.Mutex
	last  Params
}

func (c *counter) key(password, salt []byte, t, m uint32, p uint8, keyLen uint32) []byte {
	c.calls.Add(1)
	c.mu.Lock()
	c.last = Params{Memory: m, Time: t, Threads: uint32(p), SaltLen: uint32(len(salt)), KeyLen: keyLen}
	c.mu.Unlock()
	return argon2.IDKey(password, salt, t, m, p, keyLen)
}

type env struct {
	svc   *Service
	st    *fakeStore
	sink  *recorder
	clock *clock
	hash  *counter
}

// newEnv makes a Service over fakes with test parameters, a fixed clock and
// generous IP limits; mut adjusts the Config first.
func newEnv(t *testing.T, mut func(*Config)) *env {
	t.Helper()
	e := &env{st: newFakeStore(), sink: &recorder{}, clock: &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, hash: &counter{}}
	cfg := Config{Params: testParams, IPRate: rate.Inf, IPBurst: 1000, MaxConcurrentHashes: 2, Now: e.clock.Now}
	if mut != nil {
		mut(&cfg)
	}
	svc, err := newService(e.st, e.sink, cfg, options{allowWeakParams: true, key: e.hash.key})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	e.hash.calls.Store(0) // forget the dummy hash
	return e
}

// register makes an account and returns it.
func (e *env) register(t *testing.T, loginID, password string) store.Account {
	t.Helper()
	a, err := e.svc.Register(context.Background(), loginID, "Test Person", password, "self")
	if err != nil {
		t.Fatal(err)
	}
	e.hash.calls.Store(0)
	return a
}
