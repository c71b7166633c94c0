package audit_test

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
)

// memLog is an Appender and Store over memory, one entry per chunk.
type memLog struct {
	mu      sync.Mutex
	entries [][]byte
}

func (m *memLog) Append(_ context.Context, e []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries = append(m.entries, append([]byte(nil), e...))
	return uint64(len(m.entries) - 1), nil
}

func (m *memLog) LogState(context.Context) (store.LogState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := uint64(len(m.entries))
	return store.LogState{Origin: "test", Sequenced: n, Integrated: n}, nil
}

func (m *memLog) Chunks(_ context.Context, from, to uint64) ([]store.Chunk, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Chunk
	for i := from; i < to && i < uint64(len(m.entries)); i++ {
		e := m.entries[i]
		out = append(out, store.Chunk{First: i, Count: 1, Data: append([]byte{byte(len(e) >> 8), byte(len(e))}, e...)})
	}
	return out, nil
}

var t0 = time.Date(2026, 5, 23, 10, 0, 0, 0, time.UTC)

func TestEmitAndQuery(t *testing.T) {
	m := &memLog{}
	l := audit.New(m, m, func() time.Time { return t0 })
	ctx := t.Context()
	emit := func(e event.Event) {
		t.Helper()
		if err := l.Emit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	emit(event.Event{Class: event.ClassAuthn, Type: "login_succeeded", Subject: "acc_1", IP: "192.0.2.1"})
	emit(event.Event{Time: t0.Add(time.Hour), Class: event.ClassToken, Type: "token_issued", Subject: "acc_1", Client: "shop",
		Fields: map[string]any{"jti": "j1", "kid": "k1"}})
	emit(event.Event{Time: t0.Add(2 * time.Hour), Class: event.ClassToken, Type: "forged_token", Subject: "acc_2", Client: "shop",
		Fields: map[string]any{"jti": "j2", "kid": "k1"}})
	emit(event.Event{Time: t0.Add(3 * time.Hour), Class: event.ClassToken, Type: "refresh_reused", Subject: "acc_1",
		Fields: map[string]any{"previous_refresh_jti": "j1"}})

	tests := []struct {
		name string
		f    audit.Filter
		want []uint64
	}{
		{"all", audit.Filter{}, []uint64{0, 1, 2, 3}},
		{"class", audit.Filter{Classes: []event.Class{event.ClassToken}}, []uint64{1, 2, 3}},
		{"type", audit.Filter{Types: []string{"forged_token"}}, []uint64{2}},
		{"subject", audit.Filter{Subject: "acc_1"}, []uint64{0, 1, 3}},
		{"jti matches any *_jti field", audit.Filter{JTI: "j1"}, []uint64{1, 3}},
		{"kid", audit.Filter{KID: "k1"}, []uint64{1, 2}},
		{"client and ip", audit.Filter{Client: "shop", IP: "192.0.2.1"}, nil},
		{"ip", audit.Filter{IP: "192.0.2.1"}, []uint64{0}},
		{"time window", audit.Filter{Since: t0.Add(time.Hour), Until: t0.Add(3 * time.Hour)}, []uint64{1, 2}},
		{"after", audit.Filter{After: 2}, []uint64{2, 3}},
		{"subject that is only a prefix", audit.Filter{Subject: "acc_"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint64
			err := l.Query(ctx, tt.f, func(r audit.Record) error {
				got = append(got, r.Index)
				if r.Event.ID == "" || r.Event.Time.IsZero() {
					t.Errorf("event %d lacks id or time: %+v", r.Index, r.Event)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}

	// ErrStop ends a query early without error.
	n := 0
	if err := l.Query(ctx, audit.Filter{}, func(audit.Record) error { n++; return audit.ErrStop }); err != nil || n != 1 {
		t.Fatalf("stop: %d records, %v", n, err)
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Values from outside (a forger's claims, a client id as presented) that
// the canonical encoding cannot carry are cleaned, not allowed to cost the
// event.
func TestHostileValuesAreRecordedCleaned(t *testing.T) {
	m := &memLog{}
	l := audit.New(m, m, nil)
	e := event.Event{Class: event.ClassToken, Type: "forged_token", Actor: "bad\xffclient", Client: strings.Repeat("é", 400),
		Fields: map[string]any{"exp": int64(math.MaxInt64), "iat": -9007199254740993, "aud": "x\xc3", "ratio": 0.5, "n": 7}}
	idx, err := l.Append(t.Context(), e)
	if err != nil {
		t.Fatalf("a forged_token event with hostile values was lost: %v", err)
	}
	got, err := event.Parse(m.entries[idx])
	if err != nil {
		t.Fatal(err)
	}
	f := got.Fields
	if f["sanitized"] != true || f["exp"] != "9223372036854775807" || f["iat"] != "-9007199254740993" || f["ratio"] != "0.5" || f["n"] != int64(7) {
		t.Fatalf("fields %v", f)
	}
	if got.Actor != "bad\uFFFDclient" || len(got.Client) > 256 || !strings.HasPrefix(got.Client, "éé") {
		t.Fatalf("actor %q, client %d bytes", got.Actor, len(got.Client))
	}
	// A clean event is recorded as given, without the mark.
	idx, err = l.Append(t.Context(), event.Event{Class: event.ClassAuthn, Type: "login_failed", Fields: map[string]any{"reason": "password"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := event.Parse(m.entries[idx]); got.Fields["sanitized"] != nil {
		t.Fatal("a clean event was marked sanitized")
	}
}
