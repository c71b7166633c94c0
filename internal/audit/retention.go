package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/tlog"
)

// Retention periods and delays. A year is counted as 366 days, so that a
// retention of N years is never shorter than N calendar years.
const (
	Year = 366 * 24 * time.Hour
	// DefaultPersonalDataRetention is the default for access, token and
	// authn events: PIPC safety standard Art. 8 keeps access records of
	// personal-data systems at least two years for services handling
	// 50,000 people or more, or sensitive data.
	DefaultPersonalDataRetention = 2 * Year
	// DefaultRecordRetention is the default for key, admin, alert,
	// incident and audit events: the evidence an investigation reaches
	// back for (who held which key, who changed what, what fired, what was
	// done about it, what was pruned) outlives the access records.
	DefaultRecordRetention = 5 * Year
	// MinRetention is the floor no class's retention may go below: PIPC
	// safety standard Art. 8 keeps access records at least one year for
	// every personal-data system.
	MinRetention = 1 * Year
	// MaxRetention bounds a retention period.
	MaxRetention = 100 * Year
	// DefaultChangeDelay is how long after it is asked for a hold's
	// release or a shorter retention takes effect.
	DefaultChangeDelay = 7 * 24 * time.Hour
	// DefaultPruneInterval is how often Run prunes.
	DefaultPruneInterval = time.Hour
	// DefaultMaxPruneScan bounds the entries one prune step reads.
	DefaultMaxPruneScan = 1 << 16
	// MaxReasonLength bounds a hold's or change's reason, in characters.
	MaxReasonLength = 500
	// pruneAttempts bounds how often one prune re-plans after holds or
	// policy changed under it.
	pruneAttempts = 10
	// outboxPage is how many outbox events one read takes.
	outboxPage = 256
)

// ErrContended means holds or retention changed under an operation every
// time it re-planned; nothing was changed, and trying again later is
// safe (the pruning loop does so by itself).
var ErrContended = errors.New("audit: holds and retention kept changing; try again")

// DefaultRetention returns class c's retention when none was set.
func DefaultRetention(c event.Class) time.Duration {
	switch c {
	case event.ClassAccess, event.ClassToken, event.ClassAuthn:
		return DefaultPersonalDataRetention
	default:
		return DefaultRecordRetention
	}
}

// Errors.
var (
	// ErrInvalid means a hold or retention change was refused as given
	// (no reason, an empty time range, an unknown class, ...).
	ErrInvalid = errors.New("audit: invalid request")
	// ErrBelowFloor means a retention below MinRetention was asked for;
	// the error is a *FloorError.
	ErrBelowFloor = errors.New("audit: retention below the legal minimum")
	// ErrNoHold means there is no hold with the id given.
	ErrNoHold = errors.New("audit: no such hold")
	// ErrReleaseRequested means the hold's release was requested already.
	ErrReleaseRequested = errors.New("audit: hold release already requested")
)

// FloorError is a retention refused because it is below the floor.
type FloorError struct {
	Class            event.Class
	Retention, Floor time.Duration
}

func (e *FloorError) Error() string {
	return fmt.Sprintf("audit: retention of %s events cannot be %s: the minimum is %s (PIPC safety standard Art. 8)",
		e.Class, FormatDuration(e.Retention), FormatDuration(e.Floor))
}

func (e *FloorError) Unwrap() error { return ErrBelowFloor }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// RetentionStore is the storage retention works on.
type RetentionStore interface {
	tlog.ChunkReader
	LogState(ctx context.Context) (store.LogState, error)
	RetentionState(ctx context.Context) (store.RetentionState, error)
	InsertHold(ctx context.Context, h store.Hold, ev []byte) error
	RequestHoldRelease(ctx context.Context, r store.HoldRelease, ev []byte) error
	RecordHoldReleased(ctx context.Context, id string, ev []byte) error
	SetRetention(ctx context.Context, version uint64, p store.RetentionPolicy, ev []byte) error
	PruneLog(ctx context.Context, version, before uint64, ev []byte) error
	// FlushOutbox moves up to limit outbox events into the audit log in
	// one transaction and returns how many it moved.
	FlushOutbox(ctx context.Context, limit int) (int, error)
}

// RetentionConfig configures Retention.
type RetentionConfig struct {
	// ChangeDelay is how long releases and shortenings wait; 0 means
	// DefaultChangeDelay. It may be longer, never shorter.
	ChangeDelay time.Duration
	// MaxScan bounds the entries one prune step reads; 0 means
	// DefaultMaxPruneScan.
	MaxScan int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Retention applies retention policy and legal holds to the audit log.
//
// Pruning is by prefix: the log keeps every entry from its pruning point
// on, and a prune moves the point forward to the first entry that must
// still be kept — one whose class's retention has not passed, that a
// hold covers, or that does not decode. An entry with a long retention
// therefore keeps every later entry too. Entry hashes are never pruned, so
// proofs and consistency with every checkpoint still verify.
//
// Every change — a hold placed, a release requested or taking effect, a
// retention change requested or taking effect, a prune — is written with
// the audit event that records it in one transaction (the event outbox)
// and then moved into the audit log, in one transaction that appends it
// and removes it from the outbox; a crash in between leaves it in the
// outbox for the next step. Each event is recorded exactly once.
type Retention struct {
	st  RetentionStore
	cfg RetentionConfig

	pruneMu sync.Mutex // one prune at a time in this process
	flushMu sync.Mutex // one outbox flush at a time in this process
}

// NewRetention returns the retention service over st. Its events go into
// st's audit log through the outbox.
func NewRetention(st RetentionStore, cfg RetentionConfig) (*Retention, error) {
	if cfg.ChangeDelay == 0 {
		cfg.ChangeDelay = DefaultChangeDelay
	}
	if cfg.ChangeDelay < DefaultChangeDelay {
		return nil, fmt.Errorf("audit: ChangeDelay %s is shorter than %s", cfg.ChangeDelay, DefaultChangeDelay)
	}
	if cfg.MaxScan == 0 {
		cfg.MaxScan = DefaultMaxPruneScan
	}
	if cfg.MaxScan < 0 {
		return nil, errors.New("audit: MaxScan must be positive")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Retention{st: st, cfg: cfg}, nil
}

// HoldActive reports whether h blocks pruning at now: until its release,
// if one was requested, takes effect.
func HoldActive(h store.Hold, now time.Time) bool {
	return h.ReleaseRequestedAt.IsZero() || now.Before(h.ReleaseEffectiveAt)
}

// holdCovers reports whether h covers an event of class c at time t.
func holdCovers(h store.Hold, c event.Class, t time.Time) bool {
	if t.Before(h.From) || !t.Before(h.Until) {
		return false
	}
	return len(h.Classes) == 0 || slices.Contains(h.Classes, string(c))
}

// HoldSpec is a legal hold to place.
type HoldSpec struct {
	From, Until time.Time     // the event times held, [From, Until)
	Classes     []event.Class // empty: every class
	Reason      string        // why (an order's reference, a case)
	By          string        // who places it
}

func checkText(what, s string) error {
	switch {
	case strings.TrimSpace(s) == "":
		return invalidf("%s is required", what)
	case !utf8.ValidString(s):
		return invalidf("%s is not valid UTF-8", what)
	case utf8.RuneCountInString(s) > MaxReasonLength:
		return invalidf("%s is longer than %d characters", what, MaxReasonLength)
	}
	return nil
}

// PlaceHold places a legal hold. It takes effect at once: when PlaceHold
// returns, the hold is durable and no later prune removes an entry it
// covers. Entries pruned before it was placed are gone.
func (r *Retention) PlaceHold(ctx context.Context, spec HoldSpec) (store.Hold, error) {
	if spec.From.IsZero() || spec.Until.IsZero() || !spec.From.Before(spec.Until) {
		return store.Hold{}, invalidf("a hold needs a time range with from before until")
	}
	if err := checkText("a reason", spec.Reason); err != nil {
		return store.Hold{}, err
	}
	if err := checkText("who places the hold", spec.By); err != nil {
		return store.Hold{}, err
	}
	var classes []string
	for _, c := range spec.Classes {
		if !c.Valid() {
			return store.Hold{}, invalidf("unknown event class %q", c)
		}
		if !slices.Contains(classes, string(c)) {
			classes = append(classes, string(c))
		}
	}
	now := r.cfg.Now()
	h := store.Hold{
		ID:        "hold_" + event.NewID()[:16],
		From:      spec.From.UTC(),
		Until:     spec.Until.UTC(),
		Classes:   classes,
		Reason:    spec.Reason,
		CreatedBy: spec.By,
		CreatedAt: now.UTC(),
	}
	ev, err := r.encode(event.Event{Time: now, Type: "hold_placed", Actor: spec.By, Fields: map[string]any{
		"hold_id": h.ID, "from": stamp(h.From), "until": stamp(h.Until), "classes": classList(classes), "reason": h.Reason,
	}})
	if err != nil {
		return store.Hold{}, err
	}
	if err := r.st.InsertHold(ctx, h, ev); err != nil {
		return store.Hold{}, fmt.Errorf("audit: place hold: %w", err)
	}
	r.flushLogged(ctx)
	return h, nil
}

// ReleaseHold asks for hold id's release. The hold stays active until
// ChangeDelay has passed; the returned hold says when it ends.
func (r *Retention) ReleaseHold(ctx context.Context, id, by, reason string) (store.Hold, error) {
	if err := checkText("a reason", reason); err != nil {
		return store.Hold{}, err
	}
	if err := checkText("who releases the hold", by); err != nil {
		return store.Hold{}, err
	}
	st, err := r.st.RetentionState(ctx)
	if err != nil {
		return store.Hold{}, err
	}
	i := slices.IndexFunc(st.Holds, func(h store.Hold) bool { return h.ID == id })
	if i < 0 {
		return store.Hold{}, fmt.Errorf("%w: %q", ErrNoHold, id)
	}
	h := st.Holds[i]
	if !h.ReleaseRequestedAt.IsZero() {
		return h, fmt.Errorf("%w: %s ends at %s", ErrReleaseRequested, id, stamp(h.ReleaseEffectiveAt))
	}
	now := r.cfg.Now().UTC()
	rel := store.HoldRelease{ID: id, RequestedAt: now, EffectiveAt: now.Add(r.cfg.ChangeDelay), By: by, Reason: reason}
	ev, err := r.encode(event.Event{Time: now, Type: "hold_release_requested", Actor: by, Fields: map[string]any{
		"hold_id": id, "effective_at": stamp(rel.EffectiveAt), "reason": reason,
	}})
	if err != nil {
		return store.Hold{}, err
	}
	switch err := r.st.RequestHoldRelease(ctx, rel, ev); {
	case errors.Is(err, store.ErrNotFound):
		return store.Hold{}, fmt.Errorf("%w: %q", ErrNoHold, id)
	case errors.Is(err, store.ErrConflict):
		return store.Hold{}, fmt.Errorf("%w: %s", ErrReleaseRequested, id)
	case err != nil:
		return store.Hold{}, fmt.Errorf("audit: release hold: %w", err)
	}
	r.flushLogged(ctx)
	h.ReleaseRequestedAt, h.ReleaseEffectiveAt, h.ReleasedBy, h.ReleaseReason = rel.RequestedAt, rel.EffectiveAt, by, reason
	return h, nil
}

// Holds returns every hold ever placed, released ones included, in the
// order they were placed.
func (r *Retention) Holds(ctx context.Context) ([]store.Hold, error) {
	st, err := r.st.RetentionState(ctx)
	return st.Holds, err
}

// ClassPolicy is one class's retention.
type ClassPolicy struct {
	Class event.Class
	// Retention is the period in effect: an entry of this class may be
	// pruned once it is older than this.
	Retention time.Duration
	Default   bool          // never changed from DefaultRetention
	Floor     time.Duration // the least it may be set to
	SetBy     string
	SetReason string
	SetAt     time.Time
	// Pending is a shorter retention asked for, in effect from
	// PendingEffectiveAt; 0 when none.
	Pending            time.Duration
	PendingBy          string
	PendingReason      string
	PendingAt          time.Time
	PendingEffectiveAt time.Time
}

// policyOf returns class c's policy at now from st: a pending change whose
// time has come is in effect even before it is recorded.
func policyOf(st store.RetentionState, c event.Class, now time.Time) ClassPolicy {
	p := ClassPolicy{Class: c, Retention: DefaultRetention(c), Default: true, Floor: MinRetention}
	i := slices.IndexFunc(st.Policies, func(p store.RetentionPolicy) bool { return p.Class == string(c) })
	if i < 0 {
		return p
	}
	s := st.Policies[i]
	p.Retention, p.Default, p.SetBy, p.SetReason, p.SetAt = s.Retention, false, s.SetBy, s.SetReason, s.SetAt
	if s.Pending != 0 {
		if !now.Before(s.PendingEffectiveAt) {
			p.Retention, p.SetBy, p.SetReason, p.SetAt = s.Pending, s.PendingBy, s.PendingReason, s.PendingEffectiveAt
		} else {
			p.Pending, p.PendingBy, p.PendingReason = s.Pending, s.PendingBy, s.PendingReason
			p.PendingAt, p.PendingEffectiveAt = s.PendingAt, s.PendingEffectiveAt
		}
	}
	return p
}

// Policy returns every class's retention now, in event.Classes order.
func (r *Retention) Policy(ctx context.Context) ([]ClassPolicy, error) {
	st, err := r.st.RetentionState(ctx)
	if err != nil {
		return nil, err
	}
	now := r.cfg.Now()
	var out []ClassPolicy
	for _, c := range event.Classes() {
		out = append(out, policyOf(st, c, now))
	}
	return out, nil
}

// SetRetention sets class c's retention to d. A longer (or equal)
// retention takes effect at once and cancels any pending shortening; a
// shorter one takes effect after ChangeDelay. Below MinRetention it is
// refused with a *FloorError.
func (r *Retention) SetRetention(ctx context.Context, c event.Class, d time.Duration, by, reason string) (ClassPolicy, error) {
	if !c.Valid() {
		return ClassPolicy{}, invalidf("unknown event class %q", c)
	}
	if d < MinRetention {
		return ClassPolicy{}, &FloorError{Class: c, Retention: d, Floor: MinRetention}
	}
	if d > MaxRetention {
		return ClassPolicy{}, invalidf("retention %s is longer than %s", FormatDuration(d), FormatDuration(MaxRetention))
	}
	if err := checkText("a reason", reason); err != nil {
		return ClassPolicy{}, err
	}
	if err := checkText("who changes retention", by); err != nil {
		return ClassPolicy{}, err
	}
	for range pruneAttempts {
		now := r.cfg.Now().UTC()
		// Due changes first, so that they are recorded before this one.
		if err := r.applyDue(ctx, now); err != nil {
			return ClassPolicy{}, err
		}
		st, err := r.st.RetentionState(ctx)
		if err != nil {
			return ClassPolicy{}, err
		}
		cur := policyOf(st, c, now)
		p := store.RetentionPolicy{Class: string(c), Retention: cur.Retention, SetBy: cur.SetBy, SetReason: cur.SetReason, SetAt: cur.SetAt}
		var e event.Event
		if d >= cur.Retention {
			p.Retention, p.SetBy, p.SetReason, p.SetAt = d, by, reason, now
			fields := map[string]any{"class": string(c), "retention": FormatDuration(d), "retention_seconds": int64(d / time.Second),
				"previous": FormatDuration(cur.Retention), "reason": reason}
			if cur.Pending != 0 {
				fields["cancelled_pending"] = FormatDuration(cur.Pending)
			}
			e = event.Event{Time: now, Type: "retention_changed", Actor: by, Fields: fields}
		} else {
			p.Pending, p.PendingBy, p.PendingReason, p.PendingAt, p.PendingEffectiveAt = d, by, reason, now, now.Add(r.cfg.ChangeDelay)
			e = event.Event{Time: now, Type: "retention_change_requested", Actor: by, Fields: map[string]any{
				"class": string(c), "retention": FormatDuration(d), "retention_seconds": int64(d / time.Second),
				"current": FormatDuration(cur.Retention), "effective_at": stamp(p.PendingEffectiveAt), "reason": reason,
			}}
		}
		ev, err := r.encode(e)
		if err != nil {
			return ClassPolicy{}, err
		}
		err = r.st.SetRetention(ctx, st.Version, p, ev)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return ClassPolicy{}, fmt.Errorf("audit: set retention: %w", err)
		}
		r.flushLogged(ctx)
		st.Policies = slices.DeleteFunc(st.Policies, func(q store.RetentionPolicy) bool { return q.Class == p.Class })
		st.Policies = append(st.Policies, p)
		return policyOf(st, c, now), nil
	}
	return ClassPolicy{}, fmt.Errorf("audit: set retention: %w", ErrContended)
}

// applyDue records the changes whose delay has passed: shorter retentions
// come into effect and hold releases take effect, each recorded once.
func (r *Retention) applyDue(ctx context.Context, now time.Time) error {
	for range pruneAttempts {
		st, err := r.st.RetentionState(ctx)
		if err != nil {
			return err
		}
		conflict := false
		for _, h := range st.Holds {
			if h.ReleaseRequestedAt.IsZero() || h.ReleaseRecorded || now.Before(h.ReleaseEffectiveAt) {
				continue
			}
			ev, err := r.encode(event.Event{Time: now, Type: "hold_released", Actor: "system", Fields: map[string]any{
				"hold_id": h.ID, "released_by": h.ReleasedBy, "requested_at": stamp(h.ReleaseRequestedAt),
				"effective_at": stamp(h.ReleaseEffectiveAt), "reason": h.ReleaseReason,
			}})
			if err != nil {
				return err
			}
			// A conflict means another process recorded it first.
			if err := r.st.RecordHoldReleased(ctx, h.ID, ev); err != nil && !errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("audit: record release of %s: %w", h.ID, err)
			}
		}
		for _, p := range st.Policies {
			if p.Pending == 0 || now.Before(p.PendingEffectiveAt) {
				continue
			}
			n := store.RetentionPolicy{Class: p.Class, Retention: p.Pending, SetBy: p.PendingBy, SetReason: p.PendingReason, SetAt: p.PendingEffectiveAt}
			ev, err := r.encode(event.Event{Time: now, Type: "retention_change_effective", Actor: "system", Fields: map[string]any{
				"class": p.Class, "retention": FormatDuration(p.Pending), "retention_seconds": int64(p.Pending / time.Second),
				"previous": FormatDuration(p.Retention), "requested_by": p.PendingBy, "requested_at": stamp(p.PendingAt),
				"reason": p.PendingReason,
			}})
			if err != nil {
				return err
			}
			err = r.st.SetRetention(ctx, st.Version, n, ev)
			if errors.Is(err, store.ErrConflict) {
				conflict = true
				break
			}
			if err != nil {
				return fmt.Errorf("audit: apply retention of %s: %w", p.Class, err)
			}
			st.Version++ // this process's own write
		}
		if !conflict {
			return nil
		}
	}
	return ErrContended
}

// Plan is what a prune does or would do.
type Plan struct {
	// Start is the pruning point before the prune; entries [Start, Point)
	// go, Count of them.
	Start, Point, Count uint64
	// From and Until are the event times of the first and the last entry
	// that go; zero when none does.
	From, Until time.Time
	// BlockedBy says why the prune stops at Point: "hold:ID" (a legal
	// hold covers the entry at Point), "retention:CLASS" (its class's
	// retention has not passed), "undecodable" (it does not decode, so it
	// is kept), "end" (Point is the end of the integrated tree) or
	// "scan-limit" (the step read as much as it may; run again).
	BlockedBy string
	// Kept is the entry at Point, when BlockedBy names an entry.
	Kept *KeptEntry
}

// KeptEntry is the first entry a prune keeps.
type KeptEntry struct {
	Index uint64
	Time  time.Time   // zero if undecodable
	Class event.Class // empty if undecodable
}

// Blocked reasons that do not name a hold or class.
const (
	BlockedUndecodable = "undecodable"
	BlockedEnd         = "end"
	BlockedScanLimit   = "scan-limit"
)

var errKeep = errors.New("keep")

// PlanPrune says what a prune at now would do, without doing it. It reads
// at most MaxScan entries from the pruning point.
func (r *Retention) PlanPrune(ctx context.Context, now time.Time) (Plan, error) {
	st, err := r.st.RetentionState(ctx)
	if err != nil {
		return Plan{}, err
	}
	return r.plan(ctx, st, now)
}

func (r *Retention) plan(ctx context.Context, st store.RetentionState, now time.Time) (Plan, error) {
	ls, err := r.st.LogState(ctx)
	if err != nil {
		return Plan{}, err
	}
	var active []store.Hold
	for _, h := range st.Holds {
		if HoldActive(h, now) {
			active = append(active, h)
		}
	}
	retention := make(map[event.Class]time.Duration)
	for _, c := range event.Classes() {
		retention[c] = policyOf(st, c, now).Retention
	}
	p := Plan{Start: ls.Pruned, Point: ls.Pruned}
	end := min(ls.Integrated, ls.Pruned+uint64(r.cfg.MaxScan))
	err = tlog.ReadEntries(ctx, r.st, ls.Pruned, end, func(idx uint64, raw []byte) error {
		e, err := event.Parse(raw)
		if err != nil {
			p.BlockedBy, p.Kept = BlockedUndecodable, &KeptEntry{Index: idx}
			return errKeep
		}
		kept := &KeptEntry{Index: idx, Time: e.Time, Class: e.Class}
		if now.Sub(e.Time) <= retention[e.Class] {
			p.BlockedBy, p.Kept = "retention:"+string(e.Class), kept
			return errKeep
		}
		for _, h := range active {
			if holdCovers(h, e.Class, e.Time) {
				p.BlockedBy, p.Kept = "hold:"+h.ID, kept
				return errKeep
			}
		}
		if p.Count == 0 {
			p.From = e.Time
		}
		p.Until = e.Time
		p.Point, p.Count = idx+1, p.Count+1
		return nil
	})
	switch {
	case errors.Is(err, errKeep):
	case err != nil:
		return Plan{}, fmt.Errorf("audit: plan prune: %w", err)
	case end == ls.Integrated:
		p.BlockedBy = BlockedEnd
	default:
		p.BlockedBy = BlockedScanLimit
	}
	return p, nil
}

// Prune removes the bodies of the entries from the pruning point up to the
// first entry that must be kept at now, reading at most MaxScan entries,
// and records the prune as an event of the audit log with by as its actor.
// Changes due at now (hold releases, shorter retentions) are recorded
// first. The decision is checked against the holds and policy in the same
// transaction that prunes: a hold placed while the prune was planning
// makes it plan again, so a hold durable before the prune commits is
// always obeyed. It never prunes beyond the integrated tree.
func (r *Retention) Prune(ctx context.Context, now time.Time, by string) (Plan, error) {
	r.pruneMu.Lock()
	defer r.pruneMu.Unlock()
	if err := r.Flush(ctx); err != nil {
		return Plan{}, err
	}
	if err := r.applyDue(ctx, now); err != nil {
		return Plan{}, err
	}
	for range pruneAttempts {
		st, err := r.st.RetentionState(ctx)
		if err != nil {
			return Plan{}, err
		}
		p, err := r.plan(ctx, st, now)
		if err != nil {
			return Plan{}, err
		}
		if p.Count == 0 {
			return p, r.Flush(ctx)
		}
		fields := map[string]any{
			"from_index": int64(p.Start), "to_index": int64(p.Point), "count": int64(p.Count),
			"oldest": stamp(p.From), "newest": stamp(p.Until), "blocked_by": p.BlockedBy, "reason": "retention",
		}
		ev, err := r.encode(event.Event{Time: now, Type: "log_pruned", Actor: by, Fields: fields})
		if err != nil {
			return Plan{}, err
		}
		err = r.st.PruneLog(ctx, st.Version, p.Point, ev)
		if errors.Is(err, store.ErrConflict) {
			continue // a hold, a policy or another prune moved on: plan again
		}
		if err != nil {
			return Plan{}, fmt.Errorf("audit: prune: %w", err)
		}
		return p, r.Flush(ctx)
	}
	return Plan{}, fmt.Errorf("audit: prune: %w", ErrContended)
}

// Run prunes now and then every interval (DefaultPruneInterval if 0)
// until ctx ends; a step that stopped at its scan limit is followed at
// once by another. Errors are logged.
func (r *Retention) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultPruneInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for ctx.Err() == nil {
			p, err := r.Prune(ctx, r.cfg.Now(), "system")
			if err != nil {
				if ctx.Err() == nil {
					r.cfg.Logger.Error("audit log: prune", "err", err)
				}
				break
			}
			if p.Count > 0 {
				r.cfg.Logger.Info("audit log: pruned", "from", p.Start, "to", p.Point, "count", p.Count, "blocked_by", p.BlockedBy)
			}
			if p.BlockedBy != BlockedScanLimit || p.Count == 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Flush appends the events waiting in the outbox to the audit log.
func (r *Retention) Flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	for {
		n, err := r.st.FlushOutbox(ctx, outboxPage)
		if err != nil || n < outboxPage {
			return err
		}
	}
}

// flushLogged flushes after a change: the change is durable with its
// event, so a failure here only delays the event to the next flush.
func (r *Retention) flushLogged(ctx context.Context) {
	if err := r.Flush(ctx); err != nil {
		r.cfg.Logger.Warn("audit log: retention event waits in the outbox", "err", err)
	}
}

// encode assigns e an id and the audit class, and encodes it.
func (r *Retention) encode(e event.Event) ([]byte, error) {
	e.ID, e.Class = event.NewID(), event.ClassAudit
	b, err := event.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("audit: %s event: %w", e.Type, err)
	}
	return b, nil
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func classList(cs []string) string {
	if len(cs) == 0 {
		return "all"
	}
	return strings.Join(cs, " ")
}

// ParseDuration parses a retention period: a number followed by "y"
// (years of 366 days), "d" (days) or "h" (hours), e.g. "2y", "730d"; or
// anything time.ParseDuration accepts.
func ParseDuration(s string) (time.Duration, error) {
	units := map[byte]time.Duration{'y': Year, 'd': 24 * time.Hour}
	if len(s) >= 2 {
		if unit, ok := units[s[len(s)-1]]; ok {
			var n int64
			for _, c := range s[:len(s)-1] {
				if c < '0' || c > '9' || n > int64(MaxRetention/unit) {
					return 0, invalidf("bad duration %q", s)
				}
				n = n*10 + int64(c-'0')
			}
			if n > int64(MaxRetention/unit) {
				return 0, invalidf("duration %q is longer than %s", s, FormatDuration(MaxRetention))
			}
			return time.Duration(n) * unit, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, invalidf("bad duration %q (want e.g. 2y, 730d or 17544h)", s)
	}
	return d, nil
}

// FormatDuration writes d as ParseDuration reads it: whole years as "2y",
// whole days as "730d", anything else as Go writes durations.
func FormatDuration(d time.Duration) string {
	switch {
	case d > 0 && d%Year == 0:
		return fmt.Sprintf("%dy", d/Year)
	case d > 0 && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
