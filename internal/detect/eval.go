package detect

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/lru"
)

// evaluator is a rule's running state. feed looks at one event, in log
// order, and reports whether the rule fires for it, and the group of the
// alert it belongs to.
type evaluator interface {
	feed(e *event.Event) (group string, fire bool)
}

// Bounds on a data rule's state.
const (
	// maxGroups bounds the groups a windowed rule counts at once; the
	// least recently seen are forgotten first.
	maxGroups = 50_000
	// minKept is the fewest events, and values per distinct key, a group
	// keeps; it keeps at least four times its rule's thresholds.
	minKept = 64
)

func newEvaluator(r *Rule) (evaluator, error) {
	switch {
	case r.Use != "":
		return codeRules[r.Use].start(r)
	case r.Window > 0:
		keepV := minKept
		for _, d := range r.Distinct {
			keepV = max(keepV, 4*d.N)
		}
		return &windowed{r: r, keep: max(minKept, 4*r.Count), keepV: keepV, groups: lru.New[string, *window](maxGroups)}, nil
	}
	return &filter{r: r}, nil
}

// groupOf is the alert group of e under keys: their values, joined.
func groupOf(keys []Key, e *event.Event) string {
	if len(keys) == 0 {
		return ""
	}
	vals := make([]string, len(keys))
	for i, k := range keys {
		vals[i], _ = k.value(e)
	}
	return strings.Join(vals, " ")
}

// filter is an unaggregated data rule: every matching event fires.
type filter struct{ r *Rule }

func (f *filter) feed(e *event.Event) (string, bool) {
	if !f.r.matches(e) {
		return "", false
	}
	return groupOf(f.r.Group, e), true
}

// windowed is an aggregated data rule.
type windowed struct {
	r      *Rule
	keep   int // events a group keeps, for count and ratio
	keepV  int // values a group keeps per distinct key
	groups *lru.Map[string, *window]
	// maxTime bounds the event times a window believes: an event dated
	// in the future (a node with a fast clock) must not expire every
	// other event in its group. The detector sets it.
	maxTime time.Time
}

// window is one group's recent matching events, by time, and for each
// distinct key the values seen and when each was last seen.
type window struct {
	events []seen
	values []map[string]time.Time
	latest time.Time
}

type seen struct {
	t    time.Time
	flag bool // the ratio's condition holds
}

func (w *windowed) feed(e *event.Event) (string, bool) {
	r := w.r
	if !r.matches(e) {
		return "", false
	}
	group := groupOf(r.By, e)
	win, ok := w.groups.Get(group)
	if !ok {
		win = &window{values: make([]map[string]time.Time, len(r.Distinct))}
		for i := range win.values {
			win.values[i] = map[string]time.Time{}
		}
		w.groups.Put(group, win)
	}
	t := e.Time
	if !w.maxTime.IsZero() && t.After(w.maxTime) {
		t = w.maxTime
	}
	if t.After(win.latest) {
		win.latest = t
	}
	// Events are kept in time order: a late one (spooled while the log
	// was down) goes where its time puts it.
	s := seen{t: t, flag: r.Ratio != nil && r.Ratio.Cond.holds(e)}
	i := len(win.events)
	for i > 0 && win.events[i-1].t.After(t) {
		i--
	}
	win.events = slices.Insert(win.events, i, s)
	for j, d := range r.Distinct {
		if v, ok := d.Key.value(e); ok && t.After(win.values[j][v]) {
			win.values[j][v] = t
		}
	}
	fire := w.holds(win, t)
	w.forget(win)
	return group, fire
}

// holds reports whether the thresholds hold over the window ending at t:
// the events in (t-Window, t], and the values seen since t-Window.
func (w *windowed) holds(win *window, t time.Time) bool {
	r := w.r
	from := t.Add(-r.Window)
	n, flagged := 0, 0
	for i := len(win.events) - 1; i >= 0 && win.events[i].t.After(from); i-- {
		if win.events[i].t.After(t) {
			continue
		}
		n++
		if win.events[i].flag {
			flagged++
		}
	}
	if n < max(r.Count, 1) || r.Ratio != nil && flagged*100 < r.Ratio.Percent*n {
		return false
	}
	for j, d := range r.Distinct {
		k := 0
		for _, last := range win.values[j] {
			if last.After(from) {
				k++
			}
		}
		if k < d.N {
			return false
		}
	}
	return true
}

// forget drops what no later event's window can reach, and bounds what
// is kept: the latest keep events, and per distinct key the keepV values
// seen last.
func (w *windowed) forget(win *window) {
	cutoff := win.latest.Add(-w.r.Window)
	drop := 0
	for drop < len(win.events) && (!win.events[drop].t.After(cutoff) || len(win.events)-drop > w.keep) {
		drop++
	}
	if drop > 0 {
		win.events = slices.Delete(win.events, 0, drop)
	}
	for j := range win.values {
		vals := win.values[j]
		if len(vals) <= 2*w.keepV {
			continue
		}
		for v, last := range vals {
			if !last.After(cutoff) {
				delete(vals, v)
			}
		}
		if len(vals) > w.keepV {
			lasts := make([]time.Time, 0, len(vals))
			for _, last := range vals {
				lasts = append(lasts, last)
			}
			slices.SortFunc(lasts, func(a, b time.Time) int { return b.Compare(a) })
			edge := lasts[w.keepV-1]
			for v, last := range vals {
				if last.Before(edge) {
					delete(vals, v)
				}
			}
		}
	}
}

// codeRule is a rule written in Go, used by name from a rules file.
type codeRule struct {
	doc    string
	params map[string]string // name → default
	check  func(params map[string]string) error
	start  func(r *Rule) (evaluator, error)
}

var codeRules map[string]codeRule

func init() {
	codeRules = map[string]codeRule{
		"key_state":      keyStateRule,
		"key_custodian":  keyCustodianRule,
		"session_origin": sessionOriginRule,
		"read_baseline":  readBaselineRule,
	}
}

func codeRuleNames() []string {
	names := make([]string, 0, len(codeRules))
	for n := range codeRules {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// checkParams checks params against the names a code rule knows, with
// parse checking each value.
func checkParams(params, known map[string]string, parse func(name, value string) error) error {
	for name, v := range params {
		if _, ok := known[name]; !ok {
			return fmt.Errorf("unknown param %q", name)
		}
		if err := parse(name, v); err != nil {
			return fmt.Errorf("param %s: %v", name, err)
		}
	}
	return nil
}

// param returns r's value for a code rule's param, or its default.
func param(r *Rule, known map[string]string, name string) string {
	if v, ok := r.Params[name]; ok {
		return v
	}
	return known[name]
}
