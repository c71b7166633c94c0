package node

import (
	"context"
	"net"
	"net/http"
	"strings"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/issuer"
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
}

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
	g, err := guard.New(guard.Config{Policy: gc.Policy, Verifier: v, Recorder: n.Audit, Now: n.cfg.Issuance.Now, Logger: n.log})
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
	}})
	if err != nil {
		return nil, err
	}
	return g.Wrap(upstream), nil
}

// ServeGuard serves a guarded upstream (from Guard) on ln until ctx ends,
// reloading keys as Serve does, so that a key revoked by another process
// sharing the data directory is refused here within keyReloadInterval.
func (n *Node) ServeGuard(ctx context.Context, ln net.Listener, h http.Handler) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go n.reloadKeys(ctx)
	return ServeHTTP(ctx, ln, h, n.log)
}
