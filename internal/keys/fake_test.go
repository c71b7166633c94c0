package keys_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/keys"
	"github.com/custos-dev/custos/internal/store"
)

// memStore is a faithful in-memory keys.Store: rows are never deleted,
// InsertKey refuses a known kid, UpdateKey is a compare-and-swap on state
// that writes only the fields the contract names.
type memStore struct {
	mu   sync.Mutex
	keys []store.Key
	gone []store.Offboarding
	// beforeUpdate, if set, runs (once) before the next UpdateKey: a
	// concurrent node acting between a read and a write.
	beforeUpdate func()
}

var _ keys.Store = (*memStore)(nil)

func cloneKey(k store.Key) store.Key {
	k.PublicJWK = bytes.Clone(k.PublicJWK)
	k.Sealed = bytes.Clone(k.Sealed)
	return k
}

func (m *memStore) InsertKey(_ context.Context, k store.Key) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k.ID == "" {
		return fmt.Errorf("memstore: empty kid")
	}
	for _, have := range m.keys {
		if have.ID == k.ID {
			return fmt.Errorf("memstore: key %s: %w", k.ID, store.ErrConflict)
		}
	}
	m.keys = append(m.keys, cloneKey(k))
	return nil
}

func (m *memStore) Keys(context.Context) ([]store.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]store.Key, len(m.keys))
	for i, k := range m.keys {
		out[i] = cloneKey(k)
	}
	slices.SortStableFunc(out, func(a, b store.Key) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

func (m *memStore) UpdateKey(_ context.Context, k store.Key, from store.KeyState) error {
	if f := m.beforeUpdate; f != nil {
		m.beforeUpdate = nil
		f()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.keys {
		have := &m.keys[i]
		if have.ID != k.ID {
			continue
		}
		if have.State != from {
			return fmt.Errorf("memstore: key %s is %s, not %s: %w", k.ID, have.State, from, store.ErrConflict)
		}
		have.State, have.ActivateAt, have.ActivatedAt = k.State, k.ActivateAt, k.ActivatedAt
		have.RetiredAt, have.RevokedAt, have.PublishUntil, have.Note = k.RetiredAt, k.RevokedAt, k.PublishUntil, k.Note
		return nil
	}
	return fmt.Errorf("memstore: key %s: %w", k.ID, store.ErrNotFound)
}

func (m *memStore) DestroySealedKey(_ context.Context, kid string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.keys {
		if m.keys[i].ID != kid {
			continue
		}
		if m.keys[i].State != store.KeyRetired {
			return fmt.Errorf("memstore: key %s is %s: %w", kid, m.keys[i].State, store.ErrConflict)
		}
		clear(m.keys[i].Sealed)
		m.keys[i].Sealed = nil
		return nil
	}
	return fmt.Errorf("memstore: key %s: %w", kid, store.ErrNotFound)
}

func (m *memStore) OffboardCustodian(_ context.Context, o store.Offboarding) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, g := range m.gone {
		if g.Custodian == o.Custodian {
			return fmt.Errorf("memstore: custodian %s: %w", o.Custodian, store.ErrConflict)
		}
	}
	m.gone = append(m.gone, o)
	return nil
}

func (m *memStore) OffboardedCustodians(context.Context) ([]store.Offboarding, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.gone), nil
}

// set replaces a stored row wholesale (to simulate tampering).
func (m *memStore) set(t *testing.T, kid string, f func(*store.Key)) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.keys {
		if m.keys[i].ID == kid {
			f(&m.keys[i])
			return
		}
	}
	t.Fatalf("no key %s", kid)
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 15, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// events records what custody emits.
type events struct {
	mu  sync.Mutex
	all []event.Event
}

func (e *events) Emit(_ context.Context, ev event.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
	return nil
}

func (e *events) types() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.all {
		out = append(out, ev.Type)
	}
	return out
}

func (e *events) count(typ string) int {
	n := 0
	for _, t := range e.types() {
		if t == typ {
			n++
		}
	}
	return n
}

// last returns the latest event of type typ.
func (e *events) last(typ string) event.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.all) - 1; i >= 0; i-- {
		if e.all[i].Type == typ {
			return e.all[i]
		}
	}
	return event.Event{}
}

func (e *events) json(t *testing.T) []byte {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	b, err := json.Marshal(e.all)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixture is one custody over a fake store with a controllable clock.
type fixture struct {
	st     *memStore
	clk    *clock
	ev     *events
	sealer keys.Sealer
	cfg    keys.Config
	c      *keys.Custody
}

func testConfig(clk *clock) keys.Config {
	return keys.Config{
		ActivePeriod:     time.Hour,
		JWKSMaxAge:       time.Minute,
		PublishLead:      2 * time.Minute,
		MaxTokenLifetime: 10 * time.Minute,
		Leeway:           30 * time.Second,
		MaxAge:           2 * time.Hour,
		Now:              clk.Now,
	}
}

func newFixture(t *testing.T, mod func(*keys.Config)) *fixture {
	t.Helper()
	s, err := keys.OpenFileSealer(t.TempDir()+"/root.key", true)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: &memStore{}, clk: newClock(), ev: &events{}, sealer: s}
	f.cfg = testConfig(f.clk)
	if mod != nil {
		mod(&f.cfg)
	}
	f.c, err = keys.Open(t.Context(), f.st, f.sealer, f.ev, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// byState returns the keys in state st.
func (f *fixture) byState(t *testing.T, st store.KeyState) []keys.KeyInfo {
	t.Helper()
	list, err := f.c.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []keys.KeyInfo
	for _, k := range list {
		if k.State == st {
			out = append(out, k)
		}
	}
	return out
}

func (f *fixture) one(t *testing.T, st store.KeyState) keys.KeyInfo {
	t.Helper()
	ks := f.byState(t, st)
	if len(ks) != 1 {
		t.Fatalf("%d %s keys, want 1", len(ks), st)
	}
	return ks[0]
}

func (f *fixture) jwksKids(t *testing.T) []string {
	t.Helper()
	set, err := f.c.JWKS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}
