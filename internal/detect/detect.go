// Package detect watches the audit log for the signs of an attack. A
// Detector reads the log from a position it stores, runs every event
// through its rules (rules.go: data rules and rules written in Go), and
// stores the alerts they raise, one per ongoing pattern, with the position
// and the alerts' audit events in one transaction: a restart neither loses
// nor repeats an alert.
package detect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/tlog"
)

// Store is what a detector reads and writes.
type Store interface {
	tlog.ChunkReader
	LogState(ctx context.Context) (store.LogState, error)
	DetectorState(ctx context.Context, name string) (store.DetectorState, error)
	SaveDetection(ctx context.Context, d store.Detection) error
	Alerts(ctx context.Context, f store.AlertFilter) ([]store.Alert, error)
	// Keys, OffboardedCustodians and ActiveSessions seed rules written in
	// Go (key_state, key_custodian, session_origin): what they know may be
	// older than anything a restart re-reads.
	Keys(ctx context.Context) ([]store.Key, error)
	OffboardedCustodians(ctx context.Context) ([]store.Offboarding, error)
	ActiveSessions(ctx context.Context, now time.Time, limit int) ([]string, error)
}

// Alert event types (class alert; docs/spec/audit-event.md).
const (
	EventAlertRaised       = "alert_raised"
	EventAlertAcknowledged = "alert_acknowledged"
)

// Defaults.
const (
	DefaultName  = "default"
	DefaultPoll  = 100 * time.Millisecond
	DefaultBatch = 16384
)

// Config configures a Detector.
type Config struct {
	// Name tells detectors sharing a store apart; "" means DefaultName.
	Name  string
	Rules *Rules
	Store Store
	// Encode makes an audit event a log entry (audit.Log.Encode).
	Encode func(event.Event) ([]byte, error)
	// OnAlert, if set, is called with each alert raised, once it is
	// stored.
	OnAlert func(store.Alert)
	// Webhooks names the webhooks each alert raised is delivered to
	// (Deliverer sends them): the deliveries are stored with the alert.
	Webhooks []string
	// Responder carries out rules' automatic responses; nil for none.
	Responder Responder
	// Poll is how often a detector that has caught up looks for new
	// events; 0 means DefaultPoll.
	Poll time.Duration
	// Batch bounds the events read and stored at once; 0 means
	// DefaultBatch.
	Batch  int
	Now    func() time.Time
	Logger *slog.Logger
}

// Detector runs rules over the audit log.
type Detector struct {
	cfg   Config
	evals []evaluator
	state store.DetectorState
	// open is the open alerts, by rule and group.
	open      map[string]store.Alert
	maxWindow time.Duration
	marks     []mark // where recent batches began and their latest event time
	latest    time.Time
	// stale: the rules saw a batch that was not stored.
	stale bool
	// responded is when each response was last done, by action and target.
	responded map[string]time.Time
	// initial is where a detector seen for the first time started.
	initial uint64
	next    atomic.Uint64
}

// mark is a batch's first index and the latest event time in it.
type mark struct {
	first  uint64
	latest time.Time
}

// firing is a rule firing for one event.
type firing struct {
	rule  *Rule
	group string
	index uint64
	at    time.Time
	// What a response acts on, from the event.
	ip, subject, family string
}

// Responder carries out automatic responses. Each is idempotent: doing one
// twice does no more than doing it once.
type Responder interface {
	BlockIP(ctx context.Context, ip string, until time.Time, reason string) error
	RevokeFamily(ctx context.Context, family string, at time.Time) (int, error)
	RevokeSubject(ctx context.Context, subject string, at time.Time) (int, error)
}

// EventAlertResponse records an automatic response (class alert).
const EventAlertResponse = "alert_response"

func alertKey(rule, group string) string { return rule + "\x00" + group }

// New returns a detector at its stored position, its rules' windows
// rebuilt from the log (without raising anything again). A detector seen
// for the first time starts at the oldest entry the log holds.
func New(ctx context.Context, cfg Config) (*Detector, error) {
	if cfg.Rules == nil || cfg.Store == nil || cfg.Encode == nil {
		return nil, errors.New("detect: Config needs Rules, a Store and Encode")
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Poll == 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Batch == 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Detector{cfg: cfg}
	st, err := cfg.Store.DetectorState(ctx, cfg.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		ls, err := cfg.Store.LogState(ctx)
		if err != nil {
			return nil, fmt.Errorf("detect: %w", err)
		}
		st = store.DetectorState{Name: cfg.Name, Next: ls.Pruned, Warm: ls.Pruned}
		d.initial = st.Next
	case err != nil:
		return nil, fmt.Errorf("detect: %w", err)
	}
	if err := d.start(ctx, st); err != nil {
		return nil, err
	}
	return d, nil
}

// start makes the rules afresh and brings them to st: seeded from the
// store, their windows rebuilt from [st.Warm, st.Next) without raising
// anything, and the open alerts loaded.
func (d *Detector) start(ctx context.Context, st store.DetectorState) error {
	d.evals, d.marks, d.latest, d.maxWindow = nil, nil, time.Time{}, 0
	for _, r := range d.cfg.Rules.Rules {
		ev, err := newEvaluator(r)
		if err != nil {
			return fmt.Errorf("detect: rule %s: %w", r.Name, err)
		}
		d.evals = append(d.evals, ev)
		d.maxWindow = max(d.maxWindow, r.Window, horizonOf(ev))
	}
	if err := d.seed(ctx); err != nil {
		return err
	}
	if err := d.replay(ctx, st.Warm, st.Next); err != nil {
		return err
	}
	if err := d.loadOpen(ctx); err != nil {
		return err
	}
	d.state, d.stale = st, false
	d.next.Store(st.Next)
	return nil
}

// seeder is a rule that starts from what the store knows.
type seeder interface {
	seed(ctx context.Context, st Store, now time.Time) error
}

// horizon is a rule written in Go whose state a restart rebuilds by
// re-reading this far back.
type horizon interface {
	horizon() time.Duration
}

func horizonOf(ev evaluator) time.Duration {
	if h, ok := ev.(horizon); ok {
		return h.horizon()
	}
	return 0
}

func (d *Detector) seed(ctx context.Context) error {
	for _, ev := range d.evals {
		if s, ok := ev.(seeder); ok {
			if err := s.seed(ctx, d.cfg.Store, d.cfg.Now()); err != nil {
				return fmt.Errorf("detect: %w", err)
			}
		}
	}
	return nil
}

// State returns the detector's position.
func (d *Detector) State() store.DetectorState { return d.state }

func (d *Detector) loadOpen(ctx context.Context) error {
	open, err := d.cfg.Store.Alerts(ctx, store.AlertFilter{State: store.AlertOpen})
	if err != nil {
		return fmt.Errorf("detect: open alerts: %w", err)
	}
	d.open = make(map[string]store.Alert, len(open))
	for _, a := range open {
		d.open[alertKey(a.Rule, a.Group)] = a
	}
	return nil
}

// replay feeds [from, to) to the rules without raising alerts: they were
// raised, or not, when these events were first read.
func (d *Detector) replay(ctx context.Context, from, to uint64) error {
	ls, err := d.cfg.Store.LogState(ctx)
	if err != nil {
		return fmt.Errorf("detect: %w", err)
	}
	from = max(from, ls.Pruned)
	for from < to {
		b := d.fetchRange(ctx, from, min(to, from+uint64(d.cfg.Batch)))
		if b.err != nil {
			return b.err
		}
		d.feed(b)
		from = b.to
	}
	return nil
}

// batch is entries [from, to) of the log, decoded.
type batch struct {
	asked    uint64 // where the fetch was asked to start
	from, to uint64 // from is past asked only where retention pruned
	events   []event.Event
	bad      []error // why an entry did not decode
	err      error
}

// fetch reads and decodes up to Batch entries from from, as far as the log
// goes. Entries are decoded on every core.
func (d *Detector) fetch(ctx context.Context, from uint64) batch {
	ls, err := d.cfg.Store.LogState(ctx)
	if err != nil {
		return batch{asked: from, from: from, to: from, err: fmt.Errorf("detect: %w", err)}
	}
	start := max(from, ls.Pruned)
	b := d.fetchRange(ctx, start, min(ls.Sequenced, start+uint64(d.cfg.Batch)))
	b.asked = from
	return b
}

func (d *Detector) fetchRange(ctx context.Context, from, to uint64) batch {
	b := batch{asked: from, from: from, to: to}
	if to <= from {
		b.to = from
		return b
	}
	var buf []byte
	var ends []int
	err := tlog.ReadEntries(ctx, d.cfg.Store, from, to, func(_ uint64, raw []byte) error {
		buf = append(buf, raw...)
		ends = append(ends, len(buf))
		return nil
	})
	if err != nil {
		b.err = fmt.Errorf("detect: read the log [%d, %d): %w", from, to, err)
		return b
	}
	b.events, b.bad = make([]event.Event, len(ends)), make([]error, len(ends))
	workers := min(runtime.GOMAXPROCS(0), max(1, len(ends)/256))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(ends); i += workers {
				start := 0
				if i > 0 {
					start = ends[i-1]
				}
				b.events[i], b.bad[i] = event.Decode(buf[start:ends[i]])
			}
		})
	}
	wg.Wait()
	return b
}

// feed runs a batch through the rules, in log order, and returns what
// fired.
func (d *Detector) feed(b batch) []firing {
	var fired []firing
	var latest time.Time
	// Times past a minute from now are taken as now plus a minute: one
	// event from a node with a fast clock must not age every window.
	maxTime := d.cfg.Now().Add(time.Minute)
	for _, ev := range d.evals {
		if w, ok := ev.(*windowed); ok {
			w.maxTime = maxTime
		}
	}
	for i := range b.events {
		e, idx := &b.events[i], b.from+uint64(i)
		if b.bad[i] != nil {
			// audit verify reports damage; the detector reads on.
			d.cfg.Logger.Warn("detect: an entry does not decode; skipped", "index", idx, "err", b.bad[i])
			continue
		}
		if e.Class == event.ClassAlert {
			continue // its own
		}
		t := e.Time
		if t.After(maxTime) {
			t = maxTime
		}
		if t.After(latest) {
			latest = t
		}
		if t.After(d.latest) {
			d.latest = t
		}
		// An event older than the longest window behind the latest
		// (one a guard spooled while the log was down) counts in no
		// window: a restart, which re-reads only that far back, would
		// not count it either.
		late := t.Before(d.latest.Add(-d.maxWindow))
		for j, ev := range d.evals {
			if _, windowed := ev.(*windowed); late && windowed {
				continue
			}
			if group, fire := ev.feed(e); fire {
				f := firing{rule: d.cfg.Rules.Rules[j], group: group, index: idx, at: e.Time}
				if f.rule.Response != nil {
					f.ip, f.subject = e.IP, e.Subject
					f.family, _ = e.Fields["family"].(string)
				}
				fired = append(fired, f)
			}
		}
	}
	d.mark(b.from, latest)
	return fired
}

// mark notes a batch, and forgets batches no window can reach any more
// (feed keeps d.latest).
func (d *Detector) mark(first uint64, latest time.Time) {
	d.marks = append(d.marks, mark{first: first, latest: latest})
	cutoff := d.latest.Add(-d.maxWindow)
	for len(d.marks) > 1 && d.marks[0].latest.Before(cutoff) {
		d.marks = d.marks[1:]
	}
}

// Step reads and stores one batch of new events, and returns how many it
// read.
func (d *Detector) Step(ctx context.Context) (int, error) {
	return d.process(ctx, d.fetch(ctx, d.state.Next))
}

// process runs a fetched batch through the rules and stores what they
// raised, with the new position. If it fails after the rules saw the
// batch, the rules are rebuilt from the stored position before the next
// batch, so that nothing is counted twice.
func (d *Detector) process(ctx context.Context, b batch) (int, error) {
	if d.stale {
		if err := d.rebuild(ctx); err != nil {
			return 0, err
		}
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.asked != d.state.Next || b.to <= b.from {
		return 0, nil // nothing new, or fetched for another position
	}
	if b.from > d.state.Next {
		// Retention pruned what the detector had not read.
		d.cfg.Logger.Warn("detect: entries pruned before they were read", "from", d.state.Next, "to", b.from)
	}
	fired := d.feed(b)
	next := d.state
	next.Next, next.RulesDigest, next.UpdatedAt = b.to, d.cfg.Rules.Digest, d.cfg.Now()
	next.Warm = b.to
	if len(d.marks) > 0 && d.maxWindow > 0 {
		next.Warm = d.marks[0].first
	}
	// Responses go first: if storing the batch then fails, the batch is
	// read again and they are done again, which changes nothing.
	responses, err := d.respond(ctx, fired)
	if err != nil {
		d.stale = true
		return 0, err
	}
	var created []store.Alert
	for attempt := 0; ; attempt++ {
		det, open, err := d.detection(fired, next)
		det.Events = append(det.Events, responses...)
		if err == nil {
			err = d.cfg.Store.SaveDetection(ctx, det)
		}
		if err == nil {
			d.open, created = open, det.Created
			break
		}
		if !errors.Is(err, store.ErrConflict) || attempt == 2 {
			d.stale = true
			return 0, fmt.Errorf("detect: store [%d, %d): %w", b.from, b.to, err)
		}
		// An operator acknowledged an alert this batch grows: learn
		// which alerts are open, and try again.
		if err := d.loadOpen(ctx); err != nil {
			d.stale = true
			return 0, err
		}
	}
	d.state = next
	d.next.Store(next.Next)
	if d.cfg.OnAlert != nil {
		for _, a := range created {
			d.cfg.OnAlert(a)
		}
	}
	return int(b.to - b.from), nil
}

// respondAgain is how soon the same response to the same target is done
// again.
const respondAgain = time.Minute

// respond carries out the responses of the rules that fired, once per
// action and target in a while, and returns their audit events.
func (d *Detector) respond(ctx context.Context, fired []firing) ([][]byte, error) {
	var events [][]byte
	now := d.cfg.Now()
	for _, f := range fired {
		r := f.rule.Response
		if r == nil || d.cfg.Responder == nil {
			continue
		}
		target := map[string]string{ActionBlockIP: f.ip, ActionRevokeFamily: f.family, ActionForceRelogin: f.subject}[r.Action]
		key := r.Action + " " + target
		if target == "" || now.Sub(d.responded[key]) < respondAgain {
			continue
		}
		fields := map[string]any{"rule": f.rule.Name, "action": r.Action, "first_index": int64(f.index)}
		ev := event.Event{Time: now, Class: event.ClassAlert, Type: EventAlertResponse, Actor: "system", Fields: fields}
		var err error
		switch r.Action {
		case ActionBlockIP:
			until := now.Add(r.For)
			err = d.cfg.Responder.BlockIP(ctx, f.ip, until, f.rule.Name)
			ev.IP, fields["until"] = f.ip, until.UTC().Format(time.RFC3339)
		case ActionRevokeFamily:
			var n int
			n, err = d.cfg.Responder.RevokeFamily(ctx, f.family, now)
			fields["family"], fields["revoked"] = f.family, int64(n)
		case ActionForceRelogin:
			var n int
			n, err = d.cfg.Responder.RevokeSubject(ctx, f.subject, now)
			ev.Subject, fields["revoked"] = f.subject, int64(n)
		}
		if err != nil {
			return nil, fmt.Errorf("detect: rule %s: %s %s: %w", f.rule.Name, r.Action, target, err)
		}
		if d.responded == nil || len(d.responded) > 100_000 {
			for k, at := range d.responded {
				if now.Sub(at) >= respondAgain {
					delete(d.responded, k)
				}
			}
			if d.responded == nil {
				d.responded = map[string]time.Time{}
			}
		}
		d.responded[key] = now
		b, err := d.cfg.Encode(ev)
		if err != nil {
			return nil, err
		}
		events = append(events, b)
		d.cfg.Logger.Warn("detect: automatic response", "rule", f.rule.Name, "action", r.Action, "ip", ev.IP, "subject", ev.Subject)
	}
	return events, nil
}

// rebuild starts the rules afresh from the stored position, as New does.
func (d *Detector) rebuild(ctx context.Context) error {
	st, err := d.cfg.Store.DetectorState(ctx, d.cfg.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if d.state.Next != d.initial {
			return fmt.Errorf("detect: the stored state of detector %q is gone", d.cfg.Name)
		}
		st = store.DetectorState{Name: d.cfg.Name, Next: d.initial, Warm: d.initial}
	case err != nil:
		return fmt.Errorf("detect: %w", err)
	}
	return d.start(ctx, st)
}

// detection turns firings into alerts raised or grown, against a copy of
// the open alerts (the copy becomes d.open once stored).
func (d *Detector) detection(fired []firing, next store.DetectorState) (store.Detection, map[string]store.Alert, error) {
	open := make(map[string]store.Alert, len(d.open))
	for k, a := range d.open {
		open[k] = a
	}
	det := store.Detection{State: next, PrevNext: d.state.Next}
	now := d.cfg.Now()
	grown := map[string]bool{}
	for _, f := range fired {
		key := alertKey(f.rule.Name, f.group)
		a, ok := open[key]
		if ok {
			a.Count++
			a.LastIndex, a.LastAt, a.UpdatedAt = f.index, f.at, now
			open[key] = a
			grown[key] = true
			continue
		}
		a = store.Alert{
			ID: fmt.Sprintf("%s-%d", f.rule.Name, f.index), Rule: f.rule.Name, Severity: string(f.rule.Severity),
			Title: f.rule.Title, Group: f.group, State: store.AlertOpen, Count: 1,
			FirstIndex: f.index, LastIndex: f.index, FirstAt: f.at, LastAt: f.at, RaisedAt: now, UpdatedAt: now,
		}
		open[key] = a
		det.Created = append(det.Created, a)
		b, err := d.cfg.Encode(event.Event{
			Time: now, Class: event.ClassAlert, Type: EventAlertRaised, Actor: "system",
			Fields: map[string]any{
				"alert_id": a.ID, "rule": a.Rule, "severity": a.Severity, "title": a.Title,
				"group": a.Group, "first_index": int64(a.FirstIndex),
			},
		})
		if err != nil {
			return det, nil, err
		}
		det.Events = append(det.Events, b)
	}
	// Alerts raised in this batch are stored with their final count.
	for i, a := range det.Created {
		det.Created[i] = open[alertKey(a.Rule, a.Group)]
		delete(grown, alertKey(a.Rule, a.Group))
		if len(d.cfg.Webhooks) == 0 {
			continue
		}
		body, err := payload(a)
		if err != nil {
			return det, nil, err
		}
		for _, w := range d.cfg.Webhooks {
			det.Deliveries = append(det.Deliveries, store.AlertDelivery{AlertID: a.ID, Target: w, Payload: body, CreatedAt: now, NextAt: now})
		}
	}
	for key := range grown {
		det.Grown = append(det.Grown, open[key])
	}
	return det, open, nil
}

// Run reads the log until ctx ends: as fast as it can while behind, every
// Poll once caught up, reading the next batch while the rules run over
// this one. Errors are logged and retried.
func (d *Detector) Run(ctx context.Context) {
	failing := false
	var ahead chan batch // the next batch, being fetched
	for {
		var b batch
		if ahead != nil {
			b, ahead = <-ahead, nil
		} else {
			b = d.fetch(ctx, d.state.Next)
		}
		if b.err == nil && b.to > b.from {
			ch := make(chan batch, 1)
			ahead = ch
			go func(from uint64) { ch <- d.fetch(ctx, from) }(b.to)
		}
		n, err := d.process(ctx, b)
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				d.cfg.Logger.Error("detect: detection stalled; retrying", "err", err)
			}
			failing = true
		case err == nil && failing:
			d.cfg.Logger.Info("detect: detection resumed", "next", d.state.Next)
			failing = false
		}
		if err != nil && ahead != nil {
			<-ahead // read past a batch that was not stored
			ahead = nil
		}
		if n > 0 && err == nil {
			continue
		}
		wait := d.cfg.Poll
		if err != nil {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			if ahead != nil {
				<-ahead
			}
			return
		case <-time.After(wait):
		}
	}
}

// Next returns the first log index the detector has not stored as read.
// Unlike State, it may be called while Run runs.
func (d *Detector) Next() uint64 { return d.next.Load() }
