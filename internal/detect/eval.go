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
	// minKept is the fewest events a group keeps; it keeps at least four
	// times its rule's largest threshold.
	minKept = 64
)

func newEvaluator(r *Rule) (evaluator, error) {
	switch {
	case r.Use != "":
		return codeRules[r.Use].start(r)
	case r.Window > 0:
		keep := max(minKept, 4*r.Count)
		for _, d := range r.Distinct {
			keep = max(keep, 4*d.N)
		}
		return &windowed{r: r, keep: keep, groups: lru.New[string, *window](maxGroups)}, nil
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
	keep   int
	groups *lru.Map[string, *window]
}

// window is one group's recent matching events, oldest first.
type window struct {
	events   []seen
	latest   time.Time
	distinct []map[string]int // per Distinct: value → events holding it
	flagged  int              // events satisfying the ratio's condition
}

type seen struct {
	t    time.Time
	vals []string // per Distinct, "" when absent
	flag bool
}

func (w *windowed) feed(e *event.Event) (string, bool) {
	r := w.r
	if !r.matches(e) {
		return "", false
	}
	group := groupOf(r.By, e)
	win, ok := w.groups.Get(group)
	if !ok {
		win = &window{distinct: make([]map[string]int, len(r.Distinct))}
		for i := range win.distinct {
			win.distinct[i] = map[string]int{}
		}
		w.groups.Put(group, win)
	}
	if e.Time.After(win.latest) {
		win.latest = e.Time
	}
	s := seen{t: e.Time, vals: make([]string, len(r.Distinct))}
	for i, d := range r.Distinct {
		s.vals[i], _ = d.Key.value(e)
	}
	if r.Ratio != nil {
		s.flag = r.Ratio.Cond.holds(e)
	}
	win.add(s)
	cutoff := win.latest.Add(-r.Window)
	for len(win.events) > 0 && (!win.events[0].t.After(cutoff) || len(win.events) > w.keep) {
		win.drop()
	}
	n := len(win.events)
	switch {
	case n < r.Count:
		return group, false
	case r.Ratio != nil && win.flagged*100 < r.Ratio.Percent*n:
		return group, false
	}
	for i, d := range r.Distinct {
		if len(win.distinct[i]) < d.N {
			return group, false
		}
	}
	return group, true
}

func (win *window) add(s seen) {
	win.events = append(win.events, s)
	for i, v := range s.vals {
		if v != "" {
			win.distinct[i][v]++
		}
	}
	if s.flag {
		win.flagged++
	}
}

func (win *window) drop() {
	s := win.events[0]
	win.events = win.events[1:]
	for i, v := range s.vals {
		if v == "" {
			continue
		}
		if win.distinct[i][v]--; win.distinct[i][v] == 0 {
			delete(win.distinct[i], v)
		}
	}
	if s.flag {
		win.flagged--
	}
	if cap(win.events) > 2*minKept && len(win.events) < cap(win.events)/4 {
		win.events = slices.Clone(win.events) // give back what the front held
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
