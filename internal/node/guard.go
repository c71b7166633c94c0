package node

import (
	"context"
	"net"
	"net/http"

	"github.com/custos-dev/custos/guard"
)

// Guard returns upstream behind the guard: requests are checked against
// policy with tokens meant for audience, verified in-process (keys from
// custody, receipts from the store), and every access is recorded in the
// node's audit log before its response is released.
func (n *Node) Guard(policy *guard.Policy, audience string, upstream http.Handler) (http.Handler, error) {
	v, err := n.Verifier(audience)
	if err != nil {
		return nil, err
	}
	g, err := guard.New(guard.Config{Policy: policy, Verifier: v, Recorder: n.Audit, Now: n.cfg.Issuance.Now, Logger: n.log})
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
