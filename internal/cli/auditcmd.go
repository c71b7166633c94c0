package cli

import "context"

// auditCmd is "custos audit": the audit log's verification, proofs,
// queries, legal holds and retention.
func auditCmd(ctx context.Context, args []string, stdio IO) error {
	return subcommand(ctx, "audit", args, stdio, map[string]func(context.Context, []string, IO) error{
		"verify":      auditVerify,
		"prove":       auditProve,
		"check-proof": auditCheckProof,
		"query":       auditQuery,
		"hold":        auditHold,
		"retention":   auditRetention,
		"prune":       auditPrune,
	})
}
