package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/keys"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/store/sqlite"
	"github.com/custos-dev/custos/internal/tlog"
	"github.com/custos-dev/custos/internal/witness"
)

// checkpointFile keeps the audit log's latest checkpoint outside the
// database, so that a database restored from an older copy is noticed.
const checkpointFile = "audit-checkpoint"

// defaultOrigin names a new audit log: the issuer's host ("custos" without
// one), then a random suffix so that two installations never share a name
// at a witness.
func defaultOrigin(issuer string) (string, error) {
	host := "custos"
	if u, err := url.Parse(issuer); err == nil && u.Host != "" {
		host = u.Host
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return host + "/audit/" + hex.EncodeToString(b[:]), nil
}

// openAudit opens the audit log: its note key from custody (created on
// first start), and the Merkle log over the store, and sets n.Log,
// n.Audit and n.AuditVerifierKey. With witnesses configured, it also sets
// n.Witnesses, the submitter that sends them each new checkpoint.
func (n *Node) openAudit(ctx context.Context, cfg Config, namedIssuer string, st *sqlite.Store, sealer keys.Sealer) error {
	origin := cfg.AuditOrigin
	state, err := st.LogState(ctx)
	switch {
	case err == nil:
		if origin != "" && origin != state.Origin {
			return fmt.Errorf("audit log: this data directory's log is %q, not %q (a log keeps its name)", state.Origin, origin)
		}
		origin = state.Origin
	case errors.Is(err, store.ErrNotFound):
		if origin == "" {
			if origin, err = defaultOrigin(namedIssuer); err != nil {
				return err
			}
		}
	default:
		return err
	}
	// The key's creation is itself an event, recorded once the log is open.
	early := &eventBuffer{}
	nk, err := keys.OpenNoteKey(ctx, st, sealer, early, origin, now(cfg))
	if err != nil {
		return fmt.Errorf("audit log key: %w", err)
	}
	signer, err := auditlog.NewNoteSigner(origin, nk.Signer())
	if err != nil {
		return err
	}
	vkey, err := note.NewEd25519VerifierKey(origin, nk.PublicKey())
	if err != nil {
		return err
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return err
	}
	tc := cfg.AuditLog
	tc.Origin, tc.Key, tc.Verifier, tc.Logger = origin, signer, verifier, cfg.Logger
	var sub *witness.Submitter
	if len(cfg.Witnesses) > 0 {
		sub, err = witness.NewSubmitter(st, witness.SubmitterConfig{
			Witnesses: cfg.Witnesses, Log: verifier, Proofs: storeProofs{st},
			Now: cfg.Issuance.Now, Logger: cfg.Logger,
		})
		if err != nil {
			return err
		}
		if hook := tc.OnCheckpoint; hook != nil {
			tc.OnCheckpoint = func(signed []byte, cp auditlog.Checkpoint) { hook(signed, cp); sub.Submit(signed, cp) }
		} else {
			tc.OnCheckpoint = sub.Submit
		}
	}
	tc.CheckpointFile = filepath.Join(cfg.DataDir, checkpointFile)
	tl, err := tlog.Open(ctx, st, tc)
	if err != nil {
		return err
	}
	al := audit.New(tl, st, cfg.Issuance.Now)
	for _, e := range early.events {
		if err := al.Emit(ctx, e); err != nil {
			tl.Close()
			return err
		}
	}
	n.Log, n.Audit, n.AuditVerifierKey, n.Witnesses = tl, al, vkey, sub
	return nil
}

func now(cfg Config) time.Time {
	if cfg.Issuance.Now != nil {
		return cfg.Issuance.Now()
	}
	return time.Now()
}

// eventBuffer holds events until the log they belong in is open.
type eventBuffer struct {
	mu     sync.Mutex
	events []event.Event
}

func (b *eventBuffer) Emit(_ context.Context, e event.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, e)
	return nil
}
