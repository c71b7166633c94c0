package guard

import (
	"context"
	"sync"
	"time"

	"github.com/custos-dev/custos/internal/lru"
	"github.com/custos-dev/custos/verify"
)

// Defaults for recording refusals.
const (
	// DefaultRefusalsPerIP is how many refusals of requests without a
	// verified token a client IP has recorded one by one per window.
	DefaultRefusalsPerIP = 100
	// DefaultRefusalWindow is that window.
	DefaultRefusalWindow = 10 * time.Second
)

// refusalBudget bounds what anonymous refusals cost the audit log. A client
// IP's first perIP refusals in a window are recorded one by one; past them,
// its refusals are counted by reason and recorded, when the window ends, as
// one summary per reason (Access.Count). Without it, anyone could grow the
// log as fast as they can send requests with no token.
//
// Only refusals of requests whose token did not verify are counted, and of
// those never a token signed by custos's own key but never issued, or
// signed by a revoked key, or revoked: those are the signs of a stolen key,
// and each is recorded whole. A refusal of a verified token names who sent
// it and is always recorded whole, except rate_limited, which a token
// holder can cause as fast as anyone.
type refusalBudget struct {
	perIP  int
	window time.Duration
	flush  func(Access) // records a summary

	mu  sync.Mutex
	ips *lru.Map[string, *ipRefusals]
}

// ipRefusals is one client IP's window.
type ipRefusals struct {
	start     time.Time
	n         int                       // refusals in the window
	over      map[verify.Reason]counted // past the budget, by reason
	scheduled bool                      // a flush of over is scheduled
}

// alwaysRecorded are refusals of tokens signed with custos's keys that it
// did not issue, or no longer honours: never summarised.
var alwaysRecorded = map[verify.Reason]bool{
	verify.ReasonForged: true, verify.ReasonRevokedKey: true, verify.ReasonRevoked: true,
}

// record reports whether refusal a is to be recorded one by one; if not, it
// is counted into its IP's summary.
func (b *refusalBudget) record(a Access) bool {
	if b == nil || alwaysRecorded[a.Reason] || a.JTI != "" && a.Reason != ReasonRateLimited {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	w, ok := b.ips.Get(a.ClientIP)
	if !ok || !a.Time.Before(w.start.Add(b.window)) || a.Time.Before(w.start) {
		// A new window; the last one's counts, if any, are flushed
		// by the timer scheduled for them.
		w = &ipRefusals{start: a.Time}
		b.ips.Put(a.ClientIP, w)
	}
	if w.n < b.perIP {
		w.n++
		return true
	}
	if w.over == nil {
		w.over = make(map[verify.Reason]counted)
	}
	c := w.over[a.Reason]
	c.n, c.status = c.n+1, a.Status
	w.over[a.Reason] = c
	if !w.scheduled {
		w.scheduled = true
		ip, start := a.ClientIP, w.start
		// The window is on the guard's clock (Config.Now); the timer
		// waits for what is left of it.
		time.AfterFunc(start.Add(b.window).Sub(a.Time), func() { b.summarise(ip, start, w) })
	}
	return false
}

// summarise records w's counts. It runs once per window that went over the
// budget, when the window ends (or soon after).
func (b *refusalBudget) summarise(ip string, start time.Time, w *ipRefusals) {
	b.mu.Lock()
	over := w.over
	w.over, w.scheduled = nil, false
	b.mu.Unlock()
	for reason, c := range over {
		b.flush(Access{
			Time: start, Outcome: Refused, Reason: reason, Mode: Enforce, Status: c.status,
			ClientIP: ip, Count: c.n, Window: b.window,
		})
	}
}

// counted is the refusals of one reason past an IP's budget, and the
// status they were answered with.
type counted struct{ n, status int }

// flushSummary records a summary, without a request to wait for it.
func (g *Guard) flushSummary(a Access) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.cfg.Recorder.Record(ctx, a); err != nil {
		g.cfg.Logger.Error("guard: summary of refusals not recorded", "ip", a.ClientIP, "reason", a.Reason, "count", a.Count, "err", err)
	}
}
