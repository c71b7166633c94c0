package storetest

import (
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/store"
)

// testSSF checks Shared Signals streams and their token queue: a stream id
// is never reused, tokens are queued with the transmitter's position, and
// done or retried.
func testSSF(t *testing.T, b Backend) {
	ctx := t.Context()
	_, err := b.InitLog(ctx, "example.com/log")
	must(t, err)
	push := store.SSFStream{ID: "crm", Audience: "https://crm.example", Delivery: "push", Endpoint: "https://crm.example/ssf", AuthEnv: "CRM_AUTH",
		Events: []string{"urn:a", "urn:b"}, CreatedAt: t0}
	poll := store.SSFStream{ID: "bank", Audience: "https://bank.example", Delivery: "poll", PollHash: []byte("hash"), Events: []string{"urn:a"}, CreatedAt: t0}
	must(t, b.AddSSFStream(ctx, push, []byte(`{"s":1}`)))
	must(t, b.AddSSFStream(ctx, poll, []byte(`{"s":2}`)))
	mustErr(t, b.AddSSFStream(ctx, push, []byte(`{"s":3}`)), store.ErrConflict)
	streams, err := b.SSFStreams(ctx)
	must(t, err)
	if len(streams) != 2 || streams[0].ID != "bank" || string(streams[0].PollHash) != "hash" || streams[1].AuthEnv != "CRM_AUTH" || len(streams[1].Events) != 2 {
		t.Fatalf("streams %+v", streams)
	}
	// Each starts at the log entry that records its addition.
	if streams[1].StartIndex != 0 || streams[0].StartIndex != 1 {
		t.Fatalf("start indexes %d (crm) and %d (bank), want 0 and 1", streams[1].StartIndex, streams[0].StartIndex)
	}

	st := store.DetectorState{Name: "ssf", Next: 5, UpdatedAt: t0}
	toks := []store.SSFToken{
		{StreamID: "crm", JTI: "j1", Claims: []byte(`{"a":1}`), CreatedAt: t0, NextAt: t0},
		{StreamID: "bank", JTI: "j2", Claims: []byte(`{"d":1}`), CreatedAt: t0, NextAt: t0},
		{StreamID: "bank", JTI: "j3", Claims: []byte(`{"g":1}`), CreatedAt: t0, NextAt: t0},
	}
	must(t, b.SaveTransmission(ctx, store.SSFTransmission{State: st, Tokens: toks}))
	mustErr(t, b.SaveTransmission(ctx, store.SSFTransmission{State: store.DetectorState{Name: "ssf", Next: 9}, PrevNext: 2}), store.ErrConflict)
	got, err := b.DetectorState(ctx, "ssf")
	must(t, err)
	if got.Next != 5 {
		t.Fatalf("transmitter at %d", got.Next)
	}
	pend, err := b.PendingSSFTokens(ctx, "crm", t0, 10)
	must(t, err)
	if len(pend) != 1 || pend[0].JTI != "j1" || string(pend[0].Claims) != `{"a":1}` {
		t.Fatalf("pending push %+v", pend)
	}
	p := pend[0]
	p.Attempts, p.NextAt, p.LastError = 1, t0.Add(time.Minute), "503"
	must(t, b.RecordSSFToken(ctx, p))
	if pend, _ := b.PendingSSFTokens(ctx, "crm", t0, 10); len(pend) != 0 {
		t.Fatalf("a retried token due before its time: %+v", pend)
	}
	if pend, _ := b.PendingSSFTokens(ctx, "crm", time.Time{}, 10); len(pend) != 1 {
		t.Fatalf("every pending token: %+v", pend)
	}
	n, err := b.AckSSFTokens(ctx, "bank", []string{"j2", "j2", "nope", "j1"}, t0)
	must(t, err)
	if n != 1 {
		t.Fatalf("acknowledged %d, want 1 (j1 belongs to another stream)", n)
	}
	if pend, _ := b.PendingSSFTokens(ctx, "bank", time.Time{}, 10); len(pend) != 1 || pend[0].JTI != "j3" {
		t.Fatalf("pending after an ack %+v", pend)
	}
	// Pruning: what is done (j2) goes; what is pending (j3) stays.
	n, err = b.PruneSSFTokens(ctx, t0.Add(time.Second))
	must(t, err)
	if n != 1 {
		t.Fatalf("pruned %d, want 1", n)
	}
	if pend, _ := b.PendingSSFTokens(ctx, "bank", time.Time{}, 10); len(pend) != 1 {
		t.Fatalf("pruning took a pending token: %+v", pend)
	}
	must(t, b.RemoveSSFStream(ctx, "crm", t0, []byte(`{"r":1}`)))
	// A removed stream's tokens go, pending or not.
	n, err = b.PruneSSFTokens(ctx, t0.Add(time.Second))
	must(t, err)
	if n != 1 {
		t.Fatalf("pruned %d after removing crm, want its one token", n)
	}
	mustErr(t, b.RemoveSSFStream(ctx, "crm", t0, []byte(`{"r":2}`)), store.ErrNotFound)
	if streams, _ := b.SSFStreams(ctx); len(streams) != 1 {
		t.Fatalf("streams after removal %+v", streams)
	}
	mustErr(t, b.AddSSFStream(ctx, push, []byte(`{"s":4}`)), store.ErrConflict)
}
