package storetest

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/store"
)

// testHolds checks legal holds, retention policies, the retention version
// every prune is compared against, the event outbox written with each
// change, and PruneLog.
func testHolds(t *testing.T, b Backend) {
	ctx := t.Context()
	state := func() store.RetentionState {
		t.Helper()
		st, err := b.RetentionState(ctx)
		must(t, err)
		return st
	}
	outbox := func() []string {
		t.Helper()
		evs, err := b.PendingEvents(ctx, 100)
		must(t, err)
		var out []string
		for _, e := range evs {
			out = append(out, string(e.Data))
		}
		return out
	}
	wantOutbox := func(want ...string) {
		t.Helper()
		if got := outbox(); !reflect.DeepEqual(got, want) {
			t.Fatalf("outbox = %q, want %q", got, want)
		}
	}

	st := state()
	if len(st.Holds) != 0 || len(st.Policies) != 0 {
		t.Fatalf("fresh store has retention state %+v", st)
	}
	v0 := st.Version

	// Holds round-trip, and each write moves the version and queues its event.
	h1 := store.Hold{ID: "hold_1", From: t0, Until: t0.Add(11 * 24 * time.Hour), Classes: []string{"access", "token"},
		Reason: "preservation order 2025-17", CreatedBy: "op_kim", CreatedAt: t0.Add(time.Hour)}
	h2 := store.Hold{ID: "hold_2", From: t0.Add(-time.Hour), Until: t0, Reason: "all classes", CreatedBy: "op_lee", CreatedAt: t0.Add(2 * time.Hour)}
	must(t, b.InsertHold(ctx, h1, []byte("ev-hold-1")))
	must(t, b.InsertHold(ctx, h2, []byte("ev-hold-2")))
	mustErr(t, b.InsertHold(ctx, store.Hold{ID: "hold_1", From: t0, Until: t0.Add(time.Hour), Reason: "dup", CreatedBy: "x", CreatedAt: t0}, []byte("ev-dup")), store.ErrConflict)
	st = state()
	if !reflect.DeepEqual(st.Holds, []store.Hold{h1, h2}) {
		t.Fatalf("holds = %+v, want %+v", st.Holds, []store.Hold{h1, h2})
	}
	if st.Version <= v0 {
		t.Fatalf("version %d did not move from %d after placing holds", st.Version, v0)
	}
	wantOutbox("ev-hold-1", "ev-hold-2")

	// A release is requested once, then recorded once.
	v1 := st.Version
	rel := store.HoldRelease{ID: "hold_1", RequestedAt: t0.Add(24 * time.Hour), EffectiveAt: t0.Add(8 * 24 * time.Hour), By: "op_park", Reason: "order lifted"}
	mustErr(t, b.RecordHoldReleased(ctx, "hold_1", []byte("ev-early")), store.ErrConflict)
	mustErr(t, b.RequestHoldRelease(ctx, store.HoldRelease{ID: "hold_missing", RequestedAt: t0, EffectiveAt: t0, By: "x", Reason: "x"}, []byte("ev-x")), store.ErrNotFound)
	must(t, b.RequestHoldRelease(ctx, rel, []byte("ev-release-1")))
	mustErr(t, b.RequestHoldRelease(ctx, rel, []byte("ev-release-again")), store.ErrConflict)
	st = state()
	got := st.Holds[0]
	if got.ReleaseRequestedAt != rel.RequestedAt || got.ReleaseEffectiveAt != rel.EffectiveAt || got.ReleasedBy != rel.By ||
		got.ReleaseReason != rel.Reason || got.ReleaseRecorded {
		t.Fatalf("hold after release request = %+v", got)
	}
	if !st.Holds[1].ReleaseRequestedAt.IsZero() {
		t.Fatalf("release of hold_1 touched hold_2: %+v", st.Holds[1])
	}
	if st.Version <= v1 {
		t.Fatal("version did not move after a release request")
	}
	must(t, b.RecordHoldReleased(ctx, "hold_1", []byte("ev-released-1")))
	mustErr(t, b.RecordHoldReleased(ctx, "hold_1", []byte("ev-released-again")), store.ErrConflict)
	mustErr(t, b.RecordHoldReleased(ctx, "hold_missing", []byte("ev-x")), store.ErrNotFound)
	if !state().Holds[0].ReleaseRecorded {
		t.Fatal("release not recorded")
	}
	wantOutbox("ev-hold-1", "ev-hold-2", "ev-release-1", "ev-released-1")

	// Retention policies are written by compare-and-swap on the version.
	st = state()
	p := store.RetentionPolicy{Class: "access", Retention: 3 * 366 * 24 * time.Hour, SetBy: "op_kim", SetReason: "longer", SetAt: t0}
	mustErr(t, b.SetRetention(ctx, st.Version-1, p, []byte("ev-stale")), store.ErrConflict)
	must(t, b.SetRetention(ctx, st.Version, p, []byte("ev-ret-1")))
	mustErr(t, b.SetRetention(ctx, st.Version, p, []byte("ev-stale-2")), store.ErrConflict)
	st = state()
	if !reflect.DeepEqual(st.Policies, []store.RetentionPolicy{p}) {
		t.Fatalf("policies = %+v, want %+v", st.Policies, p)
	}
	p.Pending, p.PendingBy, p.PendingReason = 2*366*24*time.Hour, "op_lee", "shorter"
	p.PendingAt, p.PendingEffectiveAt = t0.Add(time.Hour), t0.Add(7*24*time.Hour+time.Hour)
	q := store.RetentionPolicy{Class: "authn", Retention: 366 * 24 * time.Hour, SetBy: "op_kim", SetReason: "r", SetAt: t0}
	must(t, b.SetRetention(ctx, st.Version, p, []byte("ev-ret-2")))
	must(t, b.SetRetention(ctx, st.Version+1, q, []byte("ev-ret-3")))
	if got := state().Policies; !reflect.DeepEqual(got, []store.RetentionPolicy{p, q}) {
		t.Fatalf("policies = %+v, want %+v", got, []store.RetentionPolicy{p, q})
	}
	wantOutbox("ev-hold-1", "ev-hold-2", "ev-release-1", "ev-released-1", "ev-ret-1", "ev-ret-2", "ev-ret-3")

	// PruneLog: compare-and-swap on the version, never backwards, never
	// past the integrated tree, and no body below the point remains.
	_, err := b.InitLog(ctx, "example.com/audit")
	must(t, err)
	must(t, b.Sequence(ctx, chunk(0, "a", "b", "c")))
	must(t, b.Sequence(ctx, chunk(3, "d", "e")))
	must(t, b.Sequence(ctx, chunk(5, "f")))
	must(t, b.Sequence(ctx, chunk(6, "g", "h")))
	must(t, b.Integrate(ctx, 0, store.Integration{Size: 6, Checkpoint: []byte("cp6"), Time: t0}))
	v := state().Version
	mustErr(t, b.PruneLog(ctx, v-1, 2, []byte("ev-prune-stale")), store.ErrConflict)
	mustErr(t, b.PruneLog(ctx, v, 7, []byte("ev-prune-past-integrated")), store.ErrConflict)
	must(t, b.PruneLog(ctx, v, 4, []byte("ev-prune-4")))
	mustErr(t, b.PruneLog(ctx, v, 2, []byte("ev-prune-back")), store.ErrConflict)
	ls, err := b.LogState(ctx)
	must(t, err)
	if ls.Pruned != 4 || ls.Sequenced != 8 || ls.Integrated != 6 {
		t.Fatalf("log state after prune %+v", ls)
	}
	if state().Version != v {
		t.Fatal("a prune changed the retention version")
	}
	cs, err := b.Chunks(ctx, 0, 8)
	must(t, err)
	if want := []store.Chunk{chunk(4, "e"), chunk(5, "f"), chunk(6, "g", "h")}; !reflect.DeepEqual(cs, want) {
		t.Fatalf("chunks after prune to 4 = %s, want %s", chunkList(cs), chunkList(want))
	}
	// A hold placed after the caller read the version makes its prune fail.
	must(t, b.InsertHold(ctx, store.Hold{ID: "hold_3", From: t0, Until: t0.Add(time.Hour), Reason: "late", CreatedBy: "op", CreatedAt: t0}, []byte("ev-hold-3")))
	mustErr(t, b.PruneLog(ctx, v, 5, []byte("ev-prune-raced")), store.ErrConflict)
	must(t, b.PruneLog(ctx, state().Version, 6, []byte("ev-prune-6")))
	cs, err = b.Chunks(ctx, 0, 8)
	must(t, err)
	if want := []store.Chunk{chunk(6, "g", "h")}; !reflect.DeepEqual(cs, want) {
		t.Fatalf("chunks after prune to 6 = %s, want %s", chunkList(cs), chunkList(want))
	}

	// The outbox is read in order, and moved into the log in pages, each
	// event exactly once, after the entries already there.
	wantOutbox("ev-hold-1", "ev-hold-2", "ev-release-1", "ev-released-1", "ev-ret-1", "ev-ret-2", "ev-ret-3", "ev-prune-4", "ev-hold-3", "ev-prune-6")
	page, err := b.PendingEvents(ctx, 2)
	must(t, err)
	if len(page) != 2 || string(page[0].Data) != "ev-hold-1" || page[0].Seq >= page[1].Seq {
		t.Fatalf("first page of the outbox = %+v", page)
	}
	before, err := b.LogState(ctx)
	must(t, err)
	n, err := b.FlushOutbox(ctx, 2)
	must(t, err)
	if n != 2 {
		t.Fatalf("FlushOutbox(2) moved %d events", n)
	}
	wantOutbox("ev-release-1", "ev-released-1", "ev-ret-1", "ev-ret-2", "ev-ret-3", "ev-prune-4", "ev-hold-3", "ev-prune-6")
	n, err = b.FlushOutbox(ctx, 100)
	must(t, err)
	if n != 8 {
		t.Fatalf("FlushOutbox(100) moved %d events, want 8", n)
	}
	wantOutbox()
	if n, err := b.FlushOutbox(ctx, 100); err != nil || n != 0 {
		t.Fatalf("FlushOutbox of an empty outbox: %d, %v", n, err)
	}
	after, err := b.LogState(ctx)
	must(t, err)
	if after.Sequenced != before.Sequenced+10 {
		t.Fatalf("the log grew by %d entries, want 10", after.Sequenced-before.Sequenced)
	}
	cs, err = b.Chunks(ctx, before.Sequenced, after.Sequenced)
	must(t, err)
	var logged []string
	for _, c := range cs {
		i := c.First
		for d := c.Data; len(d) >= 2; i++ {
			l := int(d[0])<<8 | int(d[1])
			if i >= before.Sequenced {
				logged = append(logged, string(d[2:2+l]))
			}
			d = d[2+l:]
		}
	}
	if want := []string{"ev-hold-1", "ev-hold-2", "ev-release-1", "ev-released-1", "ev-ret-1", "ev-ret-2", "ev-ret-3", "ev-prune-4", "ev-hold-3", "ev-prune-6"}; !reflect.DeepEqual(logged, want) {
		t.Fatalf("events in the log = %q, want %q", logged, want)
	}
}

func chunkList(cs []store.Chunk) string {
	s := ""
	for _, c := range cs {
		s += fmt.Sprintf("[%d+%d %q]", c.First, c.Count, c.Data)
	}
	return s
}
