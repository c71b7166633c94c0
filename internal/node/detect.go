package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/custos-dev/custos/internal/detect"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/flock"
	"github.com/custos-dev/custos/internal/store"
)

// Detect runs rules over the audit log until ctx ends (package detect),
// logging each alert raised and delivering it to hooks. One process per
// data directory detects: if another holds the lock, Detect says so and
// returns nil.
func (n *Node) Detect(ctx context.Context, rules *detect.Rules, hooks []detect.Webhook) error {
	unlock, err := flock.Lock(filepath.Join(n.cfg.DataDir, "detect.lock"))
	if err != nil {
		n.log.Info("detection runs in another process on this data directory", "err", err)
		return nil
	}
	defer unlock()
	d, err := n.Detector(ctx, rules, hooks)
	if err != nil {
		return err
	}
	n.log.Info("detection started", "rules", len(rules.Rules), "rules_sha256", rules.Digest, "next", d.State().Next, "webhooks", len(hooks))
	// Deliveries stored before a restart go out too, to the webhooks
	// configured now.
	dl := &detect.Deliverer{Store: n.Store, Hooks: hooks, Now: n.cfg.Issuance.Now, Logger: n.log}
	delivered := make(chan struct{})
	go func() { dl.Run(ctx, deliveryInterval); close(delivered) }()
	d.Run(ctx)
	<-delivered
	return nil
}

// deliveryInterval is how often due alert deliveries are attempted.
const deliveryInterval = 500 * time.Millisecond

// Detector returns a detector over the node's audit log, at its stored
// position, storing a delivery to each of hooks with each alert it raises.
// It does not take the data directory's detection lock: Detect does.
func (n *Node) Detector(ctx context.Context, rules *detect.Rules, hooks []detect.Webhook) (*detect.Detector, error) {
	names := make([]string, len(hooks))
	for i, h := range hooks {
		names[i] = h.Name
	}
	return detect.New(ctx, detect.Config{
		Rules: rules, Store: n.Store, Encode: n.Audit.Encode, Now: n.cfg.Issuance.Now, Logger: n.log, Webhooks: names,
		OnAlert: func(a store.Alert) {
			n.log.Warn("alert raised", "alert", a.ID, "rule", a.Rule, "severity", a.Severity, "group", a.Group, "title", a.Title)
		},
	})
}

// Alert lookups and acknowledgement.
var (
	// ErrAlertNotOpen: the alert was acknowledged already.
	ErrAlertNotOpen = errors.New("alert is not open")
)

// maxAckNote bounds an acknowledgement's note.
const maxAckNote = 500

// AckAlert marks an open alert acknowledged by actor, with a note, and
// records it (alert_acknowledged). The pattern's next firing opens a new
// alert.
func (n *Node) AckAlert(ctx context.Context, id, actor, note string) (store.Alert, error) {
	note = strings.TrimSpace(note)
	if note == "" || len(note) > maxAckNote {
		return store.Alert{}, fmt.Errorf("an acknowledgement needs a note of 1 to %d bytes: what was done", maxAckNote)
	}
	a, err := n.Store.Alert(ctx, id)
	if err != nil {
		return a, err
	}
	if a.State != store.AlertOpen {
		return a, fmt.Errorf("alert %s: %w (acknowledged by %s at %s)", id, ErrAlertNotOpen, a.AckedBy, a.AckedAt.Format(time.RFC3339))
	}
	a.State, a.AckedBy, a.AckNote, a.AckedAt = store.AlertAcked, actor, note, now(n.cfg)
	ev, err := n.Audit.Encode(event.Event{Class: event.ClassAlert, Type: detect.EventAlertAcknowledged, Actor: actor,
		Fields: map[string]any{"alert_id": a.ID, "rule": a.Rule, "count": a.Count, "note": note}})
	if err != nil {
		return a, err
	}
	if err := n.Store.AckAlert(ctx, a, ev); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return a, fmt.Errorf("alert %s: %w", id, ErrAlertNotOpen)
		}
		return a, err
	}
	return a, nil
}
