package audit_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/store/sqlite"
	"github.com/custos-dev/custos/internal/tlog"
)

const day = 24 * time.Hour

// clock is an injected clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// env is an audit log over SQLite with its Merkle log and retention.
type env struct {
	st  *sqlite.Store
	tl  *tlog.Log
	al  *audit.Log
	r   *audit.Retention
	clk *clock
}

const testOrigin = "custos.test/audit/retention"

func newEnv(t *testing.T) *env {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := note.NewEd25519VerifierKey(testOrigin, pub)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := auditlog.NewNoteSigner(testOrigin, key)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tlog.Open(t.Context(), st, tlog.Config{Origin: testOrigin, Key: signer, Verifier: verifier, CheckpointInterval: 2 * time.Millisecond})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tl.Close(); err != nil {
			t.Error(err)
		}
		st.Close()
	})
	e := &env{st: st, tl: tl, clk: &clock{t: time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)}}
	e.al = audit.New(tl, st, e.clk.Now)
	if e.r, err = audit.NewRetention(st, audit.RetentionConfig{Now: e.clk.Now}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) emit(t *testing.T, ev event.Event) uint64 {
	t.Helper()
	idx, err := e.al.Append(t.Context(), ev)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// sync waits until the checkpoint covers every entry and returns it.
func (e *env) sync(t *testing.T) auditlog.Checkpoint {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ls, err := e.st.LogState(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, cp := e.tl.Checkpoint(); cp.Size == ls.Sequenced && ls.Integrated == ls.Sequenced {
			return cp
		}
		if time.Now().After(deadline) {
			t.Fatalf("log not integrated: %+v", ls)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (e *env) prune(t *testing.T, now time.Time) audit.Plan {
	t.Helper()
	e.sync(t)
	p, err := e.r.Prune(t.Context(), now, "system")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *env) records(t *testing.T, f audit.Filter) []audit.Record {
	t.Helper()
	var out []audit.Record
	if err := e.al.Query(t.Context(), f, func(r audit.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) auditTypes(t *testing.T) []string {
	t.Helper()
	var types []string
	for _, r := range e.records(t, audit.Filter{Classes: []event.Class{event.ClassAudit}}) {
		types = append(types, r.Event.Type)
	}
	return types
}

func access(at time.Time, subject string) event.Event {
	return event.Event{Time: at, Class: event.ClassAccess, Type: "data_read", Actor: "shop", Subject: subject,
		Fields: map[string]any{"categories": "address"}}
}

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

// The 2025 case: a preservation order covers app access logs of 23 May–2
// June. A hold placed on it stops the prune that two years' retention
// would otherwise have done, at the first held entry, and keeps stopping
// it until its release has taken effect.
func TestLegalHoldBlocksPrune(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	var days []time.Time
	for d := date(2025, 5, 1); d.Before(date(2025, 7, 1)); d = d.Add(day) {
		days = append(days, d.Add(3*time.Hour))
		e.emit(t, access(d.Add(3*time.Hour), "acc_"+d.Format("0102")))
	}
	e.sync(t)
	late := date(2027, 8, 1) // every access event is past 2 years (of 366 days)

	// Without a hold, retention would prune every access event.
	p, err := e.r.PlanPrune(ctx, late)
	if err != nil {
		t.Fatal(err)
	}
	if p.Point != uint64(len(days)) || p.BlockedBy != audit.BlockedEnd {
		t.Fatalf("plan without a hold = %+v, want everything up to %d", p, len(days))
	}

	e.clk.Set(date(2025, 6, 5))
	h, err := e.r.PlaceHold(ctx, audit.HoldSpec{
		From: date(2025, 5, 23), Until: date(2025, 6, 3), Classes: []event.Class{event.ClassAccess},
		Reason: "preservation order 2025-0602", By: "op_kim",
	})
	if err != nil {
		t.Fatal(err)
	}
	firstHeld := uint64(slices.IndexFunc(days, func(d time.Time) bool { return !d.Before(date(2025, 5, 23)) }))
	if firstHeld != 22 {
		t.Fatalf("first held entry %d, want 22", firstHeld)
	}

	p = e.prune(t, late)
	if p.Start != 0 || p.Point != firstHeld || p.Count != firstHeld || p.BlockedBy != "hold:"+h.ID {
		t.Fatalf("prune under hold = %+v, want [0, %d) blocked by hold:%s", p, firstHeld, h.ID)
	}
	if p.Kept == nil || p.Kept.Index != firstHeld || !p.Kept.Time.Equal(days[firstHeld]) || p.Kept.Class != event.ClassAccess {
		t.Fatalf("kept entry %+v", p.Kept)
	}
	held := e.records(t, audit.Filter{Classes: []event.Class{event.ClassAccess}, Since: date(2025, 5, 23), Until: date(2025, 6, 3)})
	if len(held) != 11 {
		t.Fatalf("%d held access events remain, want the 11 days of 23 May–2 June", len(held))
	}
	if got := e.records(t, audit.Filter{Until: date(2025, 5, 23)}); len(got) != 0 {
		t.Fatalf("%d events before the hold survived the prune", len(got))
	}
	// A second prune at the same time does nothing more.
	if p = e.prune(t, late); p.Count != 0 || p.BlockedBy != "hold:"+h.ID {
		t.Fatalf("second prune = %+v", p)
	}

	// Releasing the hold takes effect only after the delay.
	e.clk.Set(late)
	rel, err := e.r.ReleaseHold(ctx, h.ID, "op_lee", "order lifted by the regulator")
	if err != nil {
		t.Fatal(err)
	}
	if want := late.Add(audit.DefaultChangeDelay); !rel.ReleaseEffectiveAt.Equal(want) {
		t.Fatalf("release effective at %s, want %s", rel.ReleaseEffectiveAt, want)
	}
	if _, err := e.r.ReleaseHold(ctx, h.ID, "op_lee", "again"); !errors.Is(err, audit.ErrReleaseRequested) {
		t.Fatalf("second release: %v, want ErrReleaseRequested", err)
	}
	if _, err := e.r.ReleaseHold(ctx, "hold_nope", "op_lee", "x"); !errors.Is(err, audit.ErrNoHold) {
		t.Fatalf("release of an unknown hold: %v, want ErrNoHold", err)
	}
	if p = e.prune(t, late.Add(audit.DefaultChangeDelay-time.Second)); p.Count != 0 || p.BlockedBy != "hold:"+h.ID {
		t.Fatalf("prune just before the release takes effect = %+v", p)
	}
	if slices.Contains(e.auditTypes(t), "hold_released") {
		t.Fatal("hold_released recorded before the delay")
	}
	p = e.prune(t, late.Add(audit.DefaultChangeDelay))
	if p.Start != firstHeld || p.Point != uint64(len(days)) {
		t.Fatalf("prune after the release = %+v, want [%d, %d)", p, firstHeld, len(days))
	}
	// The next entry is the hold's own event: audit events keep 5 years.
	if p.BlockedBy != "retention:audit" {
		t.Fatalf("prune after the release blocked by %q, want retention:audit", p.BlockedBy)
	}
	types := e.auditTypes(t)
	want := []string{"hold_placed", "log_pruned", "hold_release_requested", "hold_released", "log_pruned"}
	if !slices.Equal(types, want) {
		t.Fatalf("audit events %q, want %q", types, want)
	}
}

// Prefix pruning: an entry whose retention has not passed keeps the
// entries after it, even those whose own retention has.
func TestPruneStopsAtFirstKeptEntry(t *testing.T) {
	e := newEnv(t)
	base := date(2025, 1, 1)
	e.emit(t, access(base, "acc_1"))
	e.emit(t, event.Event{Time: base.Add(day), Class: event.ClassKey, Type: "key_created", Actor: "system"})
	e.emit(t, access(base.Add(2*day), "acc_2"))
	p := e.prune(t, base.Add(3*audit.Year))
	if p.Point != 1 || p.BlockedBy != "retention:key" || p.Kept.Index != 1 {
		t.Fatalf("prune = %+v, want [0, 1) blocked by the key event", p)
	}
	if got := e.records(t, audit.Filter{Classes: []event.Class{event.ClassAccess}}); len(got) != 1 || got[0].Index != 2 {
		t.Fatalf("access events left %+v, want index 2", got)
	}
}

// A prune deletes entry bodies but no hash: every entry, pruned or not,
// still has a verifiable inclusion proof, and every earlier checkpoint is
// still consistent with the latest.
func TestPruneKeepsProofs(t *testing.T) {
	e := newEnv(t)
	base := date(2025, 1, 1)
	var leaves []auditlog.Hash
	var cps []auditlog.Checkpoint
	const n = 600
	// Entries go in concurrently, so commits hold several entries and
	// the pruning point falls inside a chunk.
	for batch := range n / 50 {
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				k := batch*50 + i
				if _, err := e.al.Append(t.Context(), access(base.Add(time.Duration(k)*time.Hour), fmt.Sprintf("acc_%d", k))); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		cps = append(cps, e.sync(t))
	}
	raw, err := e.tl.Entries(t.Context(), 0, n)
	if err != nil {
		t.Fatal(err)
	}
	cutoff := base.Add(300 * time.Hour) // events before this go
	want := uint64(0)
	for _, b := range raw {
		leaves = append(leaves, auditlog.LeafHash(b))
		ev, err := event.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Time.Before(cutoff) && uint64(len(leaves)-1) == want {
			want++
		}
	}
	p := e.prune(t, cutoff.Add(audit.DefaultPersonalDataRetention))
	if p.Point != want || want == 0 || want >= n {
		t.Fatalf("prune = %+v, want point %d", p, want)
	}
	// The bodies are gone: no stored chunk reaches below the point.
	chunks, err := e.st.Chunks(t.Context(), 0, n)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if c.First < p.Point {
			t.Fatalf("chunk at %d (%d entries) remains below the pruning point %d", c.First, c.Count, p.Point)
		}
	}
	var missing *tlog.MissingError
	if _, err := e.tl.Entries(t.Context(), p.Point-1, p.Point); !errors.As(err, &missing) {
		t.Fatalf("reading a pruned entry: %v, want *tlog.MissingError", err)
	}
	latest := e.sync(t) // the prune's own event is in the log
	kept, err := e.tl.Entries(t.Context(), p.Point, n)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range kept {
		if auditlog.LeafHash(b) != leaves[int(p.Point)+i] {
			t.Fatalf("entry %d changed", int(p.Point)+i)
		}
	}
	for i := range uint64(n) {
		proof, err := e.tl.InclusionProof(t.Context(), i, latest.Size)
		if err != nil {
			t.Fatalf("inclusion proof of %d: %v", i, err)
		}
		if err := auditlog.VerifyInclusion(latest, i, leaves[i], proof); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	for _, old := range cps {
		proof, err := e.tl.ConsistencyProof(t.Context(), old.Size, latest.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := auditlog.VerifyConsistency(old, latest, proof); err != nil {
			t.Fatalf("checkpoint %d: %v", old.Size, err)
		}
	}
	// The prune is recorded, saying what went.
	recs := e.records(t, audit.Filter{Types: []string{"log_pruned"}})
	if len(recs) != 1 {
		t.Fatalf("%d log_pruned events, want 1", len(recs))
	}
	f := recs[0].Event.Fields
	if f["from_index"] != int64(0) || f["to_index"] != int64(p.Point) || f["count"] != int64(p.Count) || recs[0].Event.Actor != "system" {
		t.Fatalf("log_pruned event %+v", recs[0].Event)
	}
}

func TestRetentionChanges(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	start := date(2026, 1, 1)
	e.clk.Set(start)
	// An access event 2 years old, first in the log: kept under 3 years,
	// prunable under 400 days.
	e.emit(t, access(start.Add(-2*audit.Year), "acc_1"))
	policy := func(c event.Class) audit.ClassPolicy {
		t.Helper()
		ps, err := e.r.Policy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Class == c {
				return p
			}
		}
		t.Fatalf("no policy for %s", c)
		return audit.ClassPolicy{}
	}
	defaults := map[event.Class]time.Duration{
		event.ClassAccess: 2 * audit.Year, event.ClassToken: 2 * audit.Year, event.ClassAuthn: 2 * audit.Year,
		event.ClassKey: 5 * audit.Year, event.ClassAdmin: 5 * audit.Year, event.ClassAlert: 5 * audit.Year,
		event.ClassIncident: 5 * audit.Year, event.ClassAudit: 5 * audit.Year,
	}
	for c, d := range defaults {
		if p := policy(c); p.Retention != d || !p.Default || p.Floor != audit.MinRetention {
			t.Errorf("default policy of %s = %+v, want %s", c, p, audit.FormatDuration(d))
		}
	}

	// Refusals change nothing.
	refusals := []struct {
		name   string
		class  event.Class
		d      time.Duration
		reason string
		want   error
	}{
		{"below the floor", event.ClassAccess, 364 * day, "cost", audit.ErrBelowFloor},
		{"zero", event.ClassToken, 0, "cost", audit.ErrBelowFloor},
		{"too long", event.ClassAccess, 101 * audit.Year, "forever", audit.ErrInvalid},
		{"no reason", event.ClassAccess, 3 * audit.Year, " ", audit.ErrInvalid},
		{"unknown class", "billing", 3 * audit.Year, "x", audit.ErrInvalid},
	}
	for _, tc := range refusals {
		_, err := e.r.SetRetention(ctx, tc.class, tc.d, "op_kim", tc.reason)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := e.r.SetRetention(ctx, event.ClassAccess, 200*day, "op_kim", "cost"); err == nil {
		t.Fatal("below the floor accepted")
	} else if fe, ok := errors.AsType[*audit.FloorError](err); !ok || fe.Floor != audit.MinRetention || fe.Class != event.ClassAccess {
		t.Fatalf("floor refusal %v is not a *FloorError naming the floor", err)
	}
	if p := policy(event.ClassAccess); !p.Default {
		t.Fatalf("a refusal changed the policy: %+v", p)
	}

	// Lengthening is immediate.
	if _, err := e.r.SetRetention(ctx, event.ClassAccess, 3*audit.Year, "op_kim", "litigation risk"); err != nil {
		t.Fatal(err)
	}
	if p := policy(event.ClassAccess); p.Retention != 3*audit.Year || p.Pending != 0 || p.SetBy != "op_kim" {
		t.Fatalf("after lengthening: %+v", p)
	}
	// Shortening waits for the delay.
	got, err := e.r.SetRetention(ctx, event.ClassAccess, 400*day, "op_lee", "data minimisation")
	if err != nil {
		t.Fatal(err)
	}
	if got.Retention != 3*audit.Year || got.Pending != 400*day || !got.PendingEffectiveAt.Equal(start.Add(audit.DefaultChangeDelay)) {
		t.Fatalf("after shortening: %+v", got)
	}
	e.clk.Set(start.Add(audit.DefaultChangeDelay - time.Second))
	if p := e.prune(t, e.clk.Now()); p.Count != 0 || p.BlockedBy != "retention:access" {
		t.Fatalf("prune before the shortening takes effect = %+v", p)
	}
	if p := policy(event.ClassAccess); p.Retention != 3*audit.Year || p.Pending != 400*day {
		t.Fatalf("policy just before the delay: %+v", p)
	}
	e.clk.Set(start.Add(audit.DefaultChangeDelay))
	if p := policy(event.ClassAccess); p.Retention != 400*day || p.Pending != 0 {
		t.Fatalf("policy after the delay: %+v", p)
	}
	if p := e.prune(t, e.clk.Now()); p.Count != 1 {
		t.Fatalf("prune after the shortening took effect = %+v", p)
	}

	// A longer retention cancels a pending shortening at once.
	if _, err := e.r.SetRetention(ctx, event.ClassToken, 500*day, "op_lee", "shorter"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.SetRetention(ctx, event.ClassToken, 2*audit.Year, "op_kim", "keep as it was"); err != nil {
		t.Fatal(err)
	}
	if p := policy(event.ClassToken); p.Retention != 2*audit.Year || p.Pending != 0 {
		t.Fatalf("pending shortening survived a lengthening: %+v", p)
	}
	e.clk.Set(start.Add(10 * audit.DefaultChangeDelay))
	if p := policy(event.ClassToken); p.Retention != 2*audit.Year {
		t.Fatalf("cancelled shortening took effect: %+v", p)
	}

	types := e.auditTypes(t)
	want := []string{"retention_changed", "retention_change_requested", "retention_change_effective", "log_pruned",
		"retention_change_requested", "retention_changed"}
	if !slices.Equal(types, want) {
		t.Fatalf("audit events %q, want %q", types, want)
	}
	recs := e.records(t, audit.Filter{Types: []string{"retention_change_requested"}})
	if f := recs[0].Event.Fields; recs[0].Event.Actor != "op_lee" || f["reason"] != "data minimisation" || f["class"] != "access" ||
		f["retention"] != "400d" || f["effective_at"] != start.Add(audit.DefaultChangeDelay).Format(time.RFC3339Nano) {
		t.Fatalf("retention_change_requested event %+v", recs[0].Event)
	}
}

func TestPlaceHoldRefuses(t *testing.T) {
	e := newEnv(t)
	from, until := date(2025, 5, 23), date(2025, 6, 3)
	tests := []struct {
		name string
		spec audit.HoldSpec
	}{
		{"no range", audit.HoldSpec{Reason: "r", By: "op"}},
		{"until before from", audit.HoldSpec{From: until, Until: from, Reason: "r", By: "op"}},
		{"empty range", audit.HoldSpec{From: from, Until: from, Reason: "r", By: "op"}},
		{"no reason", audit.HoldSpec{From: from, Until: until, By: "op"}},
		{"no one", audit.HoldSpec{From: from, Until: until, Reason: "r"}},
		{"unknown class", audit.HoldSpec{From: from, Until: until, Classes: []event.Class{"billing"}, Reason: "r", By: "op"}},
		{"reason not UTF-8", audit.HoldSpec{From: from, Until: until, Reason: "\xff", By: "op"}},
	}
	for _, tc := range tests {
		if _, err := e.r.PlaceHold(t.Context(), tc.spec); !errors.Is(err, audit.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
		}
	}
	if hs, err := e.r.Holds(t.Context()); err != nil || len(hs) != 0 {
		t.Fatalf("holds after refusals: %v, %v", hs, err)
	}
}

// racingStore places a hold, as another process would, just before the
// first prune it sees commits.
type racingStore struct {
	*sqlite.Store
	other *audit.Retention
	spec  audit.HoldSpec
	calls atomic.Int32
	held  store.Hold
}

func (s *racingStore) PruneLog(ctx context.Context, version, before uint64, ev []byte) error {
	if s.calls.Add(1) == 1 {
		h, err := s.other.PlaceHold(ctx, s.spec)
		if err != nil {
			return err
		}
		s.held = h
	}
	return s.Store.PruneLog(ctx, version, before, ev)
}

// A hold placed while a prune is planning wins: the prune plans again and
// stops at the held entries.
func TestHoldPlacedDuringPruneWins(t *testing.T) {
	e := newEnv(t)
	base := date(2025, 5, 1)
	for i := range 40 {
		e.emit(t, access(base.Add(time.Duration(i)*day), fmt.Sprintf("acc_%d", i)))
	}
	other, err := audit.NewRetention(e.st, audit.RetentionConfig{Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	rs := &racingStore{Store: e.st, other: other, spec: audit.HoldSpec{
		From: base.Add(10 * day), Until: base.Add(20 * day), Reason: "preservation order", By: "op_kim"}}
	r, err := audit.NewRetention(rs, audit.RetentionConfig{Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	p, err := r.Prune(t.Context(), date(2028, 1, 1), "system")
	if err != nil {
		t.Fatal(err)
	}
	if rs.calls.Load() < 2 {
		t.Fatalf("PruneLog called %d times; the race did not happen", rs.calls.Load())
	}
	if p.Point != 10 || p.BlockedBy != "hold:"+rs.held.ID {
		t.Fatalf("prune = %+v, want it stopped at 10 by %s", p, rs.held.ID)
	}
	if got := e.records(t, audit.Filter{Classes: []event.Class{event.ClassAccess}}); len(got) != 30 || got[0].Index != 10 {
		t.Fatalf("%d access events left, want 30 from index 10", len(got))
	}
}

// Under concurrent holds and prunes, no prune removes an entry covered by
// a hold that was placed before the prune began.
func TestConcurrentHoldsAndPrunes(t *testing.T) {
	e := newEnv(t)
	base := date(2025, 1, 1)
	const n = 200
	for i := range n {
		e.emit(t, access(base.Add(time.Duration(i)*time.Hour), fmt.Sprintf("acc_%d", i)))
	}
	e.sync(t)
	other, err := audit.NewRetention(e.st, audit.RetentionConfig{Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	type placed struct {
		h   store.Hold
		seq int64
	}
	var seq atomic.Int64 // orders "hold returned" before "prune began"
	var mu sync.Mutex
	var holds []placed
	type pruneRun struct {
		began int64
		p     audit.Plan
	}
	var runs []pruneRun
	now := date(2028, 1, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 10; i < n; i += 10 {
			h, err := other.PlaceHold(t.Context(), audit.HoldSpec{
				From: base.Add(time.Duration(i) * time.Hour), Until: base.Add(time.Duration(i+1) * time.Hour),
				Reason: fmt.Sprintf("order %d", i), By: "op_kim"})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			holds = append(holds, placed{h, seq.Add(1)})
			mu.Unlock()
		}
	})
	wg.Go(func() {
		for range 30 {
			began := seq.Add(1)
			p, err := e.r.Prune(t.Context(), now, "system")
			if errors.Is(err, audit.ErrContended) {
				continue // gave up without pruning: allowed, the loop retries
			}
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			runs = append(runs, pruneRun{began, p})
			mu.Unlock()
		}
	})
	wg.Wait()
	// Once the holds stop changing, a prune goes through and respects all.
	final, err := e.r.Prune(t.Context(), now, "system")
	if err != nil {
		t.Fatal(err)
	}
	runs = append(runs, pruneRun{seq.Add(1), final})
	for _, run := range runs {
		for _, h := range holds {
			if h.seq > run.began {
				continue
			}
			for i := run.p.Start; i < run.p.Point; i++ {
				at := base.Add(time.Duration(i) * time.Hour)
				if !at.Before(h.h.Until) || at.Before(h.h.From) {
					continue
				}
				t.Fatalf("prune %+v removed entry %d held by %s, placed before it began", run.p, i, h.h.ID)
			}
		}
	}
}

// bareStore is a log sequenced and integrated by hand, without a Merkle
// log, and a sink collecting what retention records.
func bareStore(t *testing.T, entries [][]byte, integrated uint64) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.InitLog(t.Context(), "custos.test/bare"); err != nil {
		t.Fatal(err)
	}
	for i, b := range entries {
		c := store.Chunk{First: uint64(i), Count: 1, Data: append([]byte{byte(len(b) >> 8), byte(len(b))}, b...)}
		if err := st.Sequence(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	if integrated > 0 {
		if err := st.Integrate(t.Context(), 0, store.Integration{Size: integrated, Checkpoint: []byte("cp"), Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// loggedFrom returns the events in st's log from index from on.
func loggedFrom(t *testing.T, st *sqlite.Store, from uint64) []event.Event {
	t.Helper()
	ls, err := st.LogState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Event
	err = tlog.ReadEntries(t.Context(), st, from, ls.Sequenced, func(_ uint64, b []byte) error {
		e, err := event.Parse(b)
		out = append(out, e)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func marshal(t *testing.T, e event.Event) []byte {
	t.Helper()
	e.ID = event.NewID()
	b, err := event.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPruneBounds(t *testing.T) {
	old := date(2020, 1, 1)
	now := date(2026, 1, 1)
	ev := func(i int) []byte { return marshal(t, access(old.Add(time.Duration(i)*time.Hour), "acc")) }
	tests := []struct {
		name       string
		entries    [][]byte
		integrated uint64
		maxScan    int
		point      uint64
		blocked    string
	}{
		{"never past the integrated tree", [][]byte{ev(0), ev(1), ev(2), ev(3), ev(4)}, 3, 0, 3, audit.BlockedEnd},
		{"nothing integrated", [][]byte{ev(0), ev(1)}, 0, 0, 0, audit.BlockedEnd},
		{"undecodable entry is kept", [][]byte{ev(0), []byte(`{"v":1,"garbage"`), ev(2)}, 3, 0, 1, audit.BlockedUndecodable},
		{"later encoding version is kept", [][]byte{ev(0), []byte(`{"v":2}`), ev(2)}, 3, 0, 1, audit.BlockedUndecodable},
		{"bounded scan", [][]byte{ev(0), ev(1), ev(2), ev(3), ev(4)}, 5, 2, 2, audit.BlockedScanLimit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := bareStore(t, tc.entries, tc.integrated)
			r, err := audit.NewRetention(st, audit.RetentionConfig{MaxScan: tc.maxScan, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			p, err := r.PlanPrune(t.Context(), now)
			if err != nil {
				t.Fatal(err)
			}
			if p.Point != tc.point || p.BlockedBy != tc.blocked {
				t.Fatalf("plan = %+v, want point %d blocked by %s", p, tc.point, tc.blocked)
			}
			if _, err := r.Prune(t.Context(), now, "op_kim"); err != nil {
				t.Fatal(err)
			}
			ls, err := st.LogState(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if ls.Pruned != tc.point || ls.Pruned > ls.Integrated {
				t.Fatalf("pruned to %d (integrated %d), want %d", ls.Pruned, ls.Integrated, tc.point)
			}
			got := loggedFrom(t, st, uint64(len(tc.entries)))
			if tc.point == 0 {
				if len(got) != 0 {
					t.Fatalf("a prune of nothing recorded %+v", got)
				}
				return
			}
			if len(got) != 1 || got[0].Type != "log_pruned" || got[0].Actor != "op_kim" || got[0].Class != event.ClassAudit {
				t.Fatalf("recorded %+v, want one log_pruned by op_kim", got)
			}
		})
	}
}

// Run prunes at start and then every interval.
func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		entries := [][]byte{
			marshal(t, access(start.Add(-3*audit.Year), "acc_1")),
			marshal(t, access(start.Add(-3*audit.Year), "acc_2")),
			marshal(t, access(start.Add(-2*audit.Year+90*time.Minute), "acc_3")),
			marshal(t, access(start, "acc_4")),
		}
		st := bareStore(t, entries, 4)
		r, err := audit.NewRetention(st, audit.RetentionConfig{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { r.Run(ctx, time.Hour); close(done) }()
		pruned := func() uint64 {
			ls, err := st.LogState(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			return ls.Pruned
		}
		waitFor := func(want uint64) {
			t.Helper()
			for range 1000 {
				if pruned() == want {
					return
				}
				time.Sleep(time.Millisecond)
			}
			t.Fatalf("pruned %d, want %d", pruned(), want)
		}
		waitFor(2)
		time.Sleep(time.Hour - 10*time.Millisecond)
		if got := pruned(); got != 2 {
			t.Fatalf("pruned %d after an hour, want still 2", got)
		}
		time.Sleep(time.Hour)
		waitFor(3)
		cancel()
		<-done
	})
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{in: "2y", want: 2 * audit.Year},
		{in: "730d", want: 730 * day},
		{in: "17544h", want: 17544 * time.Hour},
		{in: "1y", want: 366 * day},
		{in: "0d", want: 0},
		{in: "y", bad: true},
		{in: "-1d", bad: true},
		{in: "1.5y", bad: true},
		{in: "101y", bad: true},
		{in: "99999999999999999999d", bad: true},
		{in: "", bad: true},
		{in: "-5h", bad: true},
		{in: "two years", bad: true},
	}
	for _, tc := range tests {
		got, err := audit.ParseDuration(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v (bad %v)", tc.in, got, err, tc.want, tc.bad)
		}
		if !tc.bad && tc.want > 0 {
			if back, err := audit.ParseDuration(audit.FormatDuration(got)); err != nil || back != got {
				t.Errorf("FormatDuration(%v) = %q does not read back", got, audit.FormatDuration(got))
			}
		}
	}
	if got := audit.FormatDuration(2 * audit.Year); got != "2y" {
		t.Errorf("FormatDuration(2y) = %q", got)
	}
	if got := audit.FormatDuration(400 * day); got != "400d" {
		t.Errorf("FormatDuration(400d) = %q", got)
	}
}

// stuckOutbox is a store whose outbox cannot be flushed, as if custos had
// stopped between a change and the flush that follows it.
type stuckOutbox struct{ *sqlite.Store }

func (stuckOutbox) FlushOutbox(context.Context, int) (int, error) {
	return 0, errors.New("stopped before the flush")
}

// An event left in the outbox by a change whose flush did not happen is
// recorded by the next flush, exactly once.
func TestOutboxEventRecordedOnce(t *testing.T) {
	st := bareStore(t, nil, 0)
	stuck, err := audit.NewRetention(stuckOutbox{st}, audit.RetentionConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := stuck.PlaceHold(t.Context(), audit.HoldSpec{From: date(2025, 5, 23), Until: date(2025, 6, 2), Reason: "preservation order", By: "op_kim"})
	if err != nil {
		t.Fatal(err)
	}
	if got := loggedFrom(t, st, 0); len(got) != 0 {
		t.Fatalf("logged before any flush: %+v", got)
	}
	r, err := audit.NewRetention(st, audit.RetentionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := r.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	got := loggedFrom(t, st, 0)
	if len(got) != 1 || got[0].Type != "hold_placed" || !strings.Contains(string(mustMarshal(t, got[0])), h.ID) {
		t.Fatalf("logged %+v, want the hold_placed event for %s once", got, h.ID)
	}
}

func mustMarshal(t *testing.T, e event.Event) []byte {
	t.Helper()
	b, err := event.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
