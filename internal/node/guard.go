package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/issuer"
	"github.com/custos-dev/custos/internal/spool"
	"github.com/custos-dev/custos/internal/tlog"
	"github.com/custos-dev/custos/verify"
)

// GuardConfig says what a guard in front of an upstream enforces.
type GuardConfig struct {
	Policy *guard.Policy
	// Audience is what access tokens must name in aud.
	Audience string
	// Upstream names the guarded service in the audit log.
	Upstream string
	// Actor is who started the guard.
	Actor string
	// Spool, when set, takes the access events the audit log cannot:
	// the guard then answers instead of failing closed, and DrainSpool
	// moves the events into the log once it is back.
	Spool *spool.Spool
}

// spoolDrainInterval is how often a guard tries to move spooled events
// into the audit log.
const spoolDrainInterval = time.Second

// EventGuardStarted records which policy a guard enforces, and which of its
// routes only monitor: switching a route to monitor shows as a guard
// started with a policy that monitors it.
const EventGuardStarted = "guard_started"

// Guard returns upstream behind the guard: requests are checked against
// the policy with tokens meant for the audience, verified in-process (keys
// from custody, receipts from the store, cached while no receipt is
// revoked), and every access is recorded in
// the node's audit log before its response is released. The guard's start
// is itself recorded.
func (n *Node) Guard(ctx context.Context, gc GuardConfig, upstream http.Handler) (http.Handler, error) {
	// Receipts are cached until the revocation epoch moves: a revoked
	// token is refused within verify.DefaultEpochInterval, without a
	// receipt read per request.
	v, err := n.verifier(gc.Audience, verify.CachedReceipts(issuer.LocalReceipts(n.Store), n.Store, verify.ReceiptCacheConfig{Now: n.cfg.Issuance.Now}))
	if err != nil {
		return nil, err
	}
	var rec guard.Recorder = n.Audit
	if gc.Spool != nil {
		rec = &spoolingRecorder{audit: n.Audit, spool: gc.Spool, log: n.log}
	}
	g, err := guard.New(guard.Config{Policy: gc.Policy, Verifier: v, Recorder: rec, Now: n.cfg.Issuance.Now, Logger: n.log,
		Blocked: n.blocks.blocked})
	if err != nil {
		return nil, err
	}
	var monitored []string
	for _, rt := range gc.Policy.Routes {
		if rt.Mode == guard.Monitor {
			monitored = append(monitored, rt.Pattern)
		}
	}
	err = n.Audit.Emit(ctx, event.Event{Class: event.ClassAdmin, Type: EventGuardStarted, Actor: gc.Actor, Fields: map[string]any{
		"policy_sha256": gc.Policy.Digest,
		"routes":        int64(len(gc.Policy.Routes)),
		"monitored":     strings.Join(monitored, ", "),
		"default_mode":  gc.Policy.Mode.String(),
		"audience":      gc.Audience,
		"upstream":      gc.Upstream,
		"spool":         gc.Spool != nil,
	}})
	if err != nil {
		return nil, err
	}
	return g.Wrap(upstream), nil
}

// ServeGuard serves a guarded upstream (from Guard) on ln until ctx ends,
// reloading keys as Serve does, so that a key revoked by another process
// sharing the data directory is refused here within KeyReload,
// and draining sp (if not nil) into the audit log every second.
func (n *Node) ServeGuard(ctx context.Context, ln net.Listener, h http.Handler, sp *spool.Spool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go n.reloadKeys(ctx)
	if sp != nil {
		// Drained until serving ends, and no later: the caller closes
		// sp after this returns.
		drained := make(chan struct{})
		go func() { n.RunSpool(ctx, sp); close(drained) }()
		defer func() { cancel(); <-drained }()
	}
	return ServeHTTP(ctx, ln, h, n.log)
}

// spoolingRecorder records access events in the audit log, or, when the log
// cannot take one, in the spool.
type spoolingRecorder struct {
	audit   *audit.Log
	spool   *spool.Spool
	log     *slog.Logger
	warned  atomic.Bool // the log's failure has been reported since it last worked
	spooled atomic.Int64
}

func (r *spoolingRecorder) Record(ctx context.Context, a guard.Access) error {
	entry, err := r.audit.EncodeAccess(a)
	if err != nil {
		return err
	}
	_, err = r.audit.AppendEntry(ctx, entry)
	switch {
	case err == nil:
		if r.warned.Swap(false) {
			r.log.Info("guard: the audit log takes access events again", "spooled", r.spooled.Load())
		}
		return nil
	case ctx.Err() != nil:
		return err // the client is gone; nothing to release
	}
	if serr := r.spool.Put(entry); serr != nil {
		return fmt.Errorf("%w; spool: %w", err, serr)
	}
	r.spooled.Add(1)
	if !r.warned.Swap(true) {
		r.log.Warn("guard: audit log unavailable; access events go to the spool", "err", err)
	}
	return nil
}

// DrainSpool moves sp's events into the audit log, exactly once, and
// records how many it moved (event guard_spool_drained).
func (n *Node) DrainSpool(ctx context.Context, sp *spool.Spool) (int, error) {
	moved, err := sp.Drain(ctx, spoolLog{n})
	if moved > 0 {
		if eerr := n.Audit.Emit(ctx, event.Event{Class: event.ClassAdmin, Type: EventSpoolDrained, Fields: map[string]any{
			"events": int64(moved),
		}}); eerr != nil && err == nil {
			err = eerr
		}
	}
	return moved, err
}

// EventSpoolDrained records access events moved from a guard's spool into
// the log: between the guard_started before them and this event, the log
// was unavailable and the guard kept its records locally.
const EventSpoolDrained = "guard_spool_drained"

// RunSpool drains sp into the audit log every second until ctx ends.
func (n *Node) RunSpool(ctx context.Context, sp *spool.Spool) {
	n.drainSpool(ctx, sp, spoolDrainInterval)
}

// drainSpool drains sp every interval until ctx ends.
func (n *Node) drainSpool(ctx context.Context, sp *spool.Spool, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		if sp.Pending() {
			moved, err := n.DrainSpool(ctx, sp)
			switch {
			case err != nil && ctx.Err() == nil && !failing:
				n.log.Warn("guard: spool not drained yet", "err", err)
				failing = true
			case err == nil:
				if moved > 0 {
					n.log.Info("guard: spooled access events are in the audit log", "events", moved)
				}
				failing = false
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// spoolLog is the audit log as the spool sees it.
type spoolLog struct{ n *Node }

func (l spoolLog) AppendAll(ctx context.Context, entries [][]byte) (uint64, error) {
	return l.n.Log.AppendAll(ctx, entries)
}

func (l spoolLog) Size(ctx context.Context) (uint64, error) {
	st, err := l.n.Store.LogState(ctx)
	return st.Sequenced, err
}

func (l spoolLog) Entries(ctx context.Context, from, to uint64, fn func(uint64, []byte) error) error {
	return tlog.ReadEntries(ctx, l.n.Store, from, to, fn)
}
