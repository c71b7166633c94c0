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
	// Keys seeds rules that know signing keys (key_state): a key's
	// events may be older than anything a restart replays.
	Keys(ctx context.Context) ([]store.Key, error)
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
	DefaultBatch = 4096
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
}

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
	for _, r := range cfg.Rules.Rules {
		ev, err := newEvaluator(r)
		if err != nil {
			return nil, fmt.Errorf("detect: rule %s: %w", r.Name, err)
		}
		d.evals = append(d.evals, ev)
		d.maxWindow = max(d.maxWindow, r.Window)
	}
	if err := d.seed(ctx); err != nil {
		return nil, err
	}
	st, err := cfg.Store.DetectorState(ctx, cfg.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		ls, err := cfg.Store.LogState(ctx)
		if err != nil {
			return nil, fmt.Errorf("detect: %w", err)
		}
		st = store.DetectorState{Name: cfg.Name, Next: ls.Pruned, Warm: ls.Pruned}
		d.state = st
	case err != nil:
		return nil, fmt.Errorf("detect: %w", err)
	default:
		d.state = st
		if err := d.replay(ctx, st.Warm, st.Next); err != nil {
			return nil, err
		}
	}
	if err := d.loadOpen(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// seeder is a rule that starts from what the store knows.
type seeder interface {
	seed(keys []store.Key)
}

func (d *Detector) seed(ctx context.Context) error {
	var keys []store.Key
	for _, ev := range d.evals {
		s, ok := ev.(seeder)
		if !ok {
			continue
		}
		if keys == nil {
			var err error
			if keys, err = d.cfg.Store.Keys(ctx); err != nil {
				return fmt.Errorf("detect: keys: %w", err)
			}
		}
		s.seed(keys)
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
		end := min(to, from+uint64(d.cfg.Batch))
		if _, _, err := d.read(ctx, from, end); err != nil {
			return err
		}
		from = end
	}
	return nil
}

// read feeds [from, to) to the rules and returns what fired and the
// latest event time seen.
func (d *Detector) read(ctx context.Context, from, to uint64) ([]firing, time.Time, error) {
	var fired []firing
	var latest time.Time
	err := tlog.ReadEntries(ctx, d.cfg.Store, from, to, func(idx uint64, raw []byte) error {
		e, err := event.Parse(raw)
		if err != nil {
			// audit verify reports damage; the detector reads on.
			d.cfg.Logger.Warn("detect: an entry does not decode; skipped", "index", idx, "err", err)
			return nil
		}
		if e.Class == event.ClassAlert {
			return nil // its own
		}
		if e.Time.After(latest) {
			latest = e.Time
		}
		for i, ev := range d.evals {
			if group, fire := ev.feed(&e); fire {
				fired = append(fired, firing{rule: d.cfg.Rules.Rules[i], group: group, index: idx, at: e.Time})
			}
		}
		return nil
	})
	if err != nil {
		return nil, latest, fmt.Errorf("detect: read the log [%d, %d): %w", from, to, err)
	}
	d.mark(from, latest)
	return fired, latest, nil
}

// mark notes a batch, and forgets batches no window can reach any more.
func (d *Detector) mark(first uint64, latest time.Time) {
	d.marks = append(d.marks, mark{first: first, latest: latest})
	if latest.After(d.latest) {
		d.latest = latest
	}
	cutoff := d.latest.Add(-d.maxWindow)
	for len(d.marks) > 1 && d.marks[0].latest.Before(cutoff) {
		d.marks = d.marks[1:]
	}
}

// Step reads and stores one batch of new events, and returns how many it
// read.
func (d *Detector) Step(ctx context.Context) (int, error) {
	ls, err := d.cfg.Store.LogState(ctx)
	if err != nil {
		return 0, fmt.Errorf("detect: %w", err)
	}
	from := max(d.state.Next, ls.Pruned)
	to := min(ls.Sequenced, from+uint64(d.cfg.Batch))
	if to <= from {
		return 0, nil
	}
	fired, _, err := d.read(ctx, from, to)
	if err != nil {
		return 0, err
	}
	next := d.state
	next.Next, next.RulesDigest, next.UpdatedAt = to, d.cfg.Rules.Digest, d.cfg.Now()
	next.Warm = to
	if len(d.marks) > 0 && d.maxWindow > 0 {
		next.Warm = d.marks[0].first
	}
	var created []store.Alert
	for attempt := 0; ; attempt++ {
		det, open, err := d.detection(fired, next)
		if err != nil {
			return 0, err
		}
		err = d.cfg.Store.SaveDetection(ctx, det)
		if err == nil {
			d.open, created = open, det.Created
			break
		}
		if !errors.Is(err, store.ErrConflict) || attempt == 2 {
			return 0, fmt.Errorf("detect: store [%d, %d): %w", from, to, err)
		}
		// An operator acknowledged an alert this batch grows: learn
		// which alerts are open, and try again.
		if err := d.loadOpen(ctx); err != nil {
			return 0, err
		}
	}
	d.state = next
	if d.cfg.OnAlert != nil {
		for _, a := range created {
			d.cfg.OnAlert(a)
		}
	}
	return int(to - from), nil
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
	}
	for key := range grown {
		det.Grown = append(det.Grown, open[key])
	}
	return det, open, nil
}

// Run reads the log until ctx ends: as fast as it can while behind, every
// Poll once caught up. Errors are logged and retried.
func (d *Detector) Run(ctx context.Context) {
	failing := false
	for {
		n, err := d.Step(ctx)
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
		if n > 0 && err == nil {
			continue
		}
		wait := d.cfg.Poll
		if err != nil {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
