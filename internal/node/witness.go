package node

import (
	"context"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/tlog"
)

// storeProofs computes the audit log's consistency proofs from the stored
// tiles, which are durable before a checkpoint over them is published.
type storeProofs struct{ st tlog.TileReader }

func (p storeProofs) ConsistencyProof(ctx context.Context, older, newer uint64) ([]auditlog.Hash, error) {
	return tlog.ConsistencyProof(ctx, p.st, older, newer)
}

// runWitnesses starts sending checkpoints to the witnesses, beginning with
// the latest one (a witness that missed some while the node was down is
// caught up), and returns a function that stops the sending and waits for
// it to end.
func (n *Node) runWitnesses(ctx context.Context) (stop func()) {
	if n.Witnesses == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	if signed, cp := n.Log.Checkpoint(); signed != nil {
		n.Witnesses.Submit(signed, cp)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Witnesses.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}
