package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

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
	if errors.Is(err, flock.ErrHeld) {
		n.log.Info("detection runs in another process on this data directory")
		return nil
	}
	if err != nil {
		return fmt.Errorf("detection: %w", err)
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
		Responder: responder{n},
		OnAlert: func(a store.Alert) {
			n.log.Warn("alert raised", "alert", a.ID, "rule", a.Rule, "severity", a.Severity, "group", a.Group, "title", a.Title)
		},
	})
}

// Alert lookups and acknowledgement.
var (
	// ErrAlertNotOpen: the alert was acknowledged already.
	ErrAlertNotOpen = errors.New("alert is not open")
	// ErrBadNote: an acknowledgement's or a lifted block's note is
	// missing, too long or not printable.
	ErrBadNote = errors.New("bad note")
)

// maxAckNote bounds an acknowledgement's note.
const maxAckNote = 500

// printableNote reports whether a note is valid UTF-8 without control
// characters: it is printed on operators' terminals.
func printableNote(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' })
}

// AckAlert marks an open alert acknowledged by actor, with a note, and
// records it (alert_acknowledged). The pattern's next firing opens a new
// alert.
func (n *Node) AckAlert(ctx context.Context, id, actor, note string) (store.Alert, error) {
	note = strings.TrimSpace(note)
	if note == "" || len(note) > maxAckNote || !printableNote(note) {
		return store.Alert{}, fmt.Errorf("%w: an acknowledgement needs a note of 1 to %d bytes of printable text: what was done", ErrBadNote, maxAckNote)
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

// responder carries out detection rules' automatic responses on the node.
type responder struct{ n *Node }

func (r responder) BlockIP(ctx context.Context, ip string, until time.Time, reason string) error {
	now := now(r.n.cfg)
	err := r.n.Store.BlockIP(ctx, store.IPBlock{IP: ip, Until: until, Reason: "rule " + reason, CreatedAt: now, UpdatedAt: now}, nil)
	if err == nil {
		r.n.blocks.invalidate()
	}
	return err
}

func (r responder) RevokeFamily(ctx context.Context, family string, at time.Time) (int, error) {
	return r.n.Store.RevokeFamily(ctx, family, at)
}

func (r responder) RevokeSubject(ctx context.Context, subject string, at time.Time) (int, error) {
	return r.n.Store.RevokeSubject(ctx, subject, at)
}

// blockInterval is how long the guard goes on a list of blocked IPs
// before reading it again: another process's block takes effect within it.
const blockInterval = time.Second

// blocklist is the blocked IPs, read from the store at most every
// blockInterval, off the request path.
type blocklist struct {
	n       *Node
	ips     atomic.Pointer[map[string]time.Time]
	loaded  atomic.Int64 // unix nanoseconds
	loading atomic.Bool
}

// blocked reports whether ip is blocked at now. The first call reads the
// list; later ones use it and refresh it in the background when stale.
func (b *blocklist) blocked(ip string, now time.Time) bool {
	m := b.ips.Load()
	if m == nil {
		b.load()
		m = b.ips.Load()
	} else if time.Since(time.Unix(0, b.loaded.Load())) > blockInterval && b.loading.CompareAndSwap(false, true) {
		go func() { defer b.loading.Store(false); b.load() }()
	}
	if m == nil {
		return false // the store could not be read; logged in load
	}
	until, ok := (*m)[ip]
	return ok && now.Before(until)
}

func (b *blocklist) load() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := b.n.Store.IPBlocks(ctx, now(b.n.cfg))
	if err != nil {
		b.n.log.Error("guard: the blocked IPs could not be read; using the last list", "err", err)
		return
	}
	m := make(map[string]time.Time, len(list))
	for _, bl := range list {
		m[bl.IP] = bl.Until
	}
	b.ips.Store(&m)
	b.loaded.Store(time.Now().UnixNano())
}

// invalidate makes the next check read the list again, before it answers:
// a block this process placed or lifted holds from its next request.
func (b *blocklist) invalidate() { b.ips.Store(nil) }

// EventIPUnblocked records an operator lifting a block (class admin).
const EventIPUnblocked = "ip_unblocked"

// UnblockIP lifts the block on ip, recording who did it and why.
func (n *Node) UnblockIP(ctx context.Context, ip, actor, note string) error {
	note = strings.TrimSpace(note)
	if note == "" || len(note) > maxAckNote || !printableNote(note) {
		return fmt.Errorf("%w: lifting a block needs a note of 1 to %d bytes of printable text: why", ErrBadNote, maxAckNote)
	}
	ev, err := n.Audit.Encode(event.Event{Class: event.ClassAdmin, Type: EventIPUnblocked, Actor: actor, IP: ip, Fields: map[string]any{"note": note}})
	if err != nil {
		return err
	}
	if err := n.Store.UnblockIP(ctx, ip, now(n.cfg), ev); err != nil {
		return err
	}
	n.blocks.invalidate()
	return nil
}
