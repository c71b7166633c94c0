package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/store"
)

// testDetection checks a detector's state (compare-and-swap on its
// position), its alerts (one open per rule and group, grown only while
// open), acknowledgement, and the audit events stored with each.
func testDetection(t *testing.T, b Backend) {
	ctx := t.Context()
	_, err := b.InitLog(ctx, "example.com/log")
	must(t, err)
	_, err = b.DetectorState(ctx, "default")
	mustErr(t, err, store.ErrNotFound)

	alert := store.Alert{ID: "forged_token-7", Rule: "forged_token", Severity: "critical", Title: "forged", Group: "kid-1",
		Count: 1, FirstIndex: 7, LastIndex: 7, FirstAt: t0, LastAt: t0, RaisedAt: t0.Add(time.Second), UpdatedAt: t0.Add(time.Second)}
	st := store.DetectorState{Name: "default", Next: 10, Warm: 2, RulesDigest: "abc", UpdatedAt: t0}
	deliveries := []store.AlertDelivery{
		{AlertID: alert.ID, Target: "soc", Payload: []byte(`{"id":"forged_token-7"}`), CreatedAt: t0, NextAt: t0},
		{AlertID: alert.ID, Target: "pager", Payload: []byte(`{"id":"forged_token-7"}`), CreatedAt: t0, NextAt: t0.Add(time.Minute)},
	}
	must(t, b.SaveDetection(ctx, store.Detection{State: st, Created: []store.Alert{alert}, Events: [][]byte{[]byte(`{"alert":1}`)}, Deliveries: deliveries}))
	due, err := b.DueDeliveries(ctx, t0, 10)
	must(t, err)
	if len(due) != 1 || due[0].Target != "soc" || string(due[0].Payload) != `{"id":"forged_token-7"}` || due[0].ID == 0 {
		t.Fatalf("due deliveries %+v", due)
	}
	d := due[0]
	d.Attempts, d.NextAt, d.LastError = 1, t0.Add(2*time.Minute), "503"
	must(t, b.RecordDelivery(ctx, d))
	due, err = b.DueDeliveries(ctx, t0.Add(90*time.Second), 10)
	must(t, err)
	if len(due) != 1 || due[0].Target != "pager" {
		t.Fatalf("due after a failed attempt %+v", due)
	}
	due[0].DeliveredAt, due[0].Attempts = t0.Add(91*time.Second), 1
	must(t, b.RecordDelivery(ctx, due[0]))
	due, err = b.DueDeliveries(ctx, t0.Add(time.Hour), 10)
	must(t, err)
	if len(due) != 1 || due[0].Target != "soc" || due[0].Attempts != 1 || due[0].LastError != "503" {
		t.Fatalf("due later %+v", due)
	}
	mustErr(t, b.RecordDelivery(ctx, store.AlertDelivery{ID: 999}), store.ErrNotFound)
	// Pruning takes what was delivered (pager), not what is pending (soc).
	pruned, err := b.PruneDeliveries(ctx, t0.Add(2*time.Minute))
	must(t, err)
	if pruned != 1 {
		t.Fatalf("pruned %d deliveries, want 1", pruned)
	}
	if due, _ := b.DueDeliveries(ctx, t0.Add(time.Hour), 10); len(due) != 1 {
		t.Fatalf("pruning took a pending delivery: %+v", due)
	}
	got, err := b.DetectorState(ctx, "default")
	must(t, err)
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("state %+v, want %+v", got, st)
	}
	ls, err := b.LogState(ctx)
	must(t, err)
	if ls.Sequenced != 1 {
		t.Fatalf("log holds %d entries after a detection with one event, want 1", ls.Sequenced)
	}
	a, err := b.Alert(ctx, alert.ID)
	must(t, err)
	alert.State = store.AlertOpen
	if !reflect.DeepEqual(a, alert) {
		t.Fatalf("alert %+v, want %+v", a, alert)
	}

	// Another detector's position: refused whole.
	stale := store.Detection{State: store.DetectorState{Name: "default", Next: 20, UpdatedAt: t0}, PrevNext: 5,
		Created: []store.Alert{{ID: "x-1", Rule: "x", Group: "", FirstAt: t0}}, Events: [][]byte{[]byte("e")}}
	mustErr(t, b.SaveDetection(ctx, stale), store.ErrConflict)
	stale.PrevNext = 0 // a second first save
	mustErr(t, b.SaveDetection(ctx, stale), store.ErrConflict)
	// A first save from past 0 (a detector new to a pruned log).
	must(t, b.SaveDetection(ctx, store.Detection{State: store.DetectorState{Name: "late", Next: 500, Warm: 400, UpdatedAt: t0}, PrevNext: 400}))
	if got, err := b.DetectorState(ctx, "late"); err != nil || got.Next != 500 {
		t.Fatalf("a first save from 400: %+v, %v", got, err)
	}
	if _, err := b.Alert(ctx, "x-1"); err == nil {
		t.Fatal("a refused detection created its alert")
	}

	// A second open alert for the same rule and group is refused.
	dup := alert
	dup.ID = "forged_token-9"
	st.Next, st.Warm = 12, 3
	mustErr(t, b.SaveDetection(ctx, store.Detection{State: st, PrevNext: 10, Created: []store.Alert{dup}}), store.ErrConflict)

	// Growing.
	grown := alert
	grown.Count, grown.LastIndex, grown.LastAt, grown.UpdatedAt = 3, 11, t0.Add(time.Minute), t0.Add(time.Minute)
	must(t, b.SaveDetection(ctx, store.Detection{State: st, PrevNext: 10, Grown: []store.Alert{grown}}))
	a, err = b.Alert(ctx, alert.ID)
	must(t, err)
	if a.Count != 3 || a.LastIndex != 11 || !a.LastAt.Equal(grown.LastAt) || a.FirstIndex != 7 {
		t.Fatalf("grown alert %+v", a)
	}

	// Acknowledged: it grows no more, and the pattern may open another.
	ack := a
	ack.AckedBy, ack.AckNote, ack.AckedAt = "op_kim", "key rotated", t0.Add(time.Hour)
	must(t, b.AckAlert(ctx, ack, []byte(`{"ack":1}`)))
	mustErr(t, b.AckAlert(ctx, ack, []byte(`{"ack":2}`)), store.ErrConflict)
	mustErr(t, b.AckAlert(ctx, store.Alert{ID: "nope"}, []byte(`{"ack":3}`)), store.ErrNotFound)
	a, err = b.Alert(ctx, alert.ID)
	must(t, err)
	if a.State != store.AlertAcked || a.AckedBy != "op_kim" || a.AckNote != "key rotated" || !a.AckedAt.Equal(ack.AckedAt) {
		t.Fatalf("acknowledged alert %+v", a)
	}
	grown.Count = 4
	st.Next = 14
	mustErr(t, b.SaveDetection(ctx, store.Detection{State: st, PrevNext: 12, Grown: []store.Alert{grown}}), store.ErrConflict)
	dup.FirstAt, dup.RaisedAt = t0.Add(2*time.Hour), t0.Add(2*time.Hour)
	must(t, b.SaveDetection(ctx, store.Detection{State: st, PrevNext: 12, Created: []store.Alert{dup}}))

	open, err := b.Alerts(ctx, store.AlertFilter{State: store.AlertOpen})
	must(t, err)
	all, err := b.Alerts(ctx, store.AlertFilter{})
	must(t, err)
	one, err := b.Alerts(ctx, store.AlertFilter{Rule: "forged_token", Limit: 1})
	must(t, err)
	if len(open) != 1 || open[0].ID != dup.ID || len(all) != 2 || all[0].ID != dup.ID || len(one) != 1 {
		t.Fatalf("alerts: open %d, all %d, limited %d", len(open), len(all), len(one))
	}
	ls, err = b.LogState(ctx)
	must(t, err)
	if ls.Sequenced != 2 {
		t.Fatalf("log holds %d entries, want 2 (the first detection's event and the acknowledgement)", ls.Sequenced)
	}
}

// testIPBlocks checks blocks: a later block wins, an earlier one does not
// shorten it, expired ones are not in force, lifting one is recorded.
func testIPBlocks(t *testing.T, b Backend) {
	ctx := t.Context()
	_, err := b.InitLog(ctx, "example.com/log")
	must(t, err)
	must(t, b.BlockIP(ctx, store.IPBlock{IP: "203.0.113.9", Until: t0.Add(time.Hour), Reason: "forged_token", CreatedAt: t0, UpdatedAt: t0}, []byte(`{"b":1}`)))
	must(t, b.BlockIP(ctx, store.IPBlock{IP: "203.0.113.9", Until: t0.Add(time.Minute), Reason: "other", CreatedAt: t0, UpdatedAt: t0.Add(time.Second)}, nil))
	must(t, b.BlockIP(ctx, store.IPBlock{IP: "198.51.100.1", Until: t0.Add(time.Minute), Reason: "spray", CreatedAt: t0, UpdatedAt: t0}, nil))
	blocks, err := b.IPBlocks(ctx, t0)
	must(t, err)
	if len(blocks) != 2 || blocks[1].IP != "203.0.113.9" || !blocks[1].Until.Equal(t0.Add(time.Hour)) || blocks[1].Reason != "forged_token" {
		t.Fatalf("blocks %+v", blocks)
	}
	must(t, b.BlockIP(ctx, store.IPBlock{IP: "203.0.113.9", Until: t0.Add(2 * time.Hour), Reason: "again", CreatedAt: t0, UpdatedAt: t0.Add(time.Minute)}, nil))
	blocks, err = b.IPBlocks(ctx, t0.Add(30*time.Minute))
	must(t, err)
	if len(blocks) != 1 || !blocks[0].Until.Equal(t0.Add(2*time.Hour)) || blocks[0].Reason != "again" || !blocks[0].CreatedAt.Equal(t0) {
		t.Fatalf("blocks after 30 min %+v", blocks)
	}
	mustErr(t, b.UnblockIP(ctx, "198.51.100.1", t0.Add(30*time.Minute), []byte(`{"u":0}`)), store.ErrNotFound)
	must(t, b.UnblockIP(ctx, "203.0.113.9", t0.Add(30*time.Minute), []byte(`{"u":1}`)))
	blocks, err = b.IPBlocks(ctx, t0)
	must(t, err)
	if len(blocks) != 1 || blocks[0].IP != "198.51.100.1" {
		t.Fatalf("blocks after lifting %+v", blocks)
	}
	ls, err := b.LogState(ctx)
	must(t, err)
	if ls.Sequenced != 2 {
		t.Fatalf("%d events recorded, want 2", ls.Sequenced)
	}
}
