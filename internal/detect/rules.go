package detect

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/linefile"
)

// RulesVersion is the first line of every rules file
// (docs/spec/detection-rules.md).
const RulesVersion = "custos-rules v1"

// Limits on a rules file.
const (
	maxRulesLine   = 4096
	maxRulesBytes  = 1 << 20
	maxRulesErrors = 20
	// MaxWindow bounds a rule's window: a restarted detector replays that
	// much of the log to rebuild its counts.
	MaxWindow = time.Hour
)

// Severity ranks alerts.
type Severity string

const (
	Critical Severity = "critical"
	High     Severity = "high"
	Medium   Severity = "medium"
	Low      Severity = "low"
)

func (s Severity) valid() bool {
	switch s {
	case Critical, High, Medium, Low:
		return true
	}
	return false
}

// Rule is one detection rule. A data rule fires on events that match it,
// or, with a Window, once a group's matching events in the window pass its
// thresholds. A code rule (Use) is written in Go and takes Params.
type Rule struct {
	Name      string
	Title     string
	Severity  Severity
	Reference string
	Line      int // where the rule starts in its file

	// Match is a list of alternatives, each a list of conditions that
	// must all hold.
	Match [][]Cond

	// Window, By and the thresholds make an aggregated rule: it fires
	// for an event once the events matching in the Window before it
	// (itself included) with the same By values number at least Count,
	// have at least N distinct values of each Distinct key, and a share
	// of at least Ratio.Percent satisfy Ratio.Cond.
	Window   time.Duration
	By       []Key
	Count    int
	Distinct []Distinct
	Ratio    *Ratio

	// Group keys an unaggregated rule's alerts: one alert per distinct
	// group, growing while open. None: one alert for the rule.
	Group []Key

	// Use names a rule written in Go; Params are its settings.
	Use    string
	Params map[string]string

	// Response is what the detector does, on its own, each time the rule
	// fires; nil for nothing.
	Response *Response
}

// Response is an automatic response to a rule firing.
type Response struct {
	// Action is ActionBlockIP, ActionRevokeFamily or ActionForceRelogin.
	Action string
	// For is how long a block lasts.
	For time.Duration
}

// Automatic responses.
const (
	// ActionBlockIP: the guard refuses the firing event's IP for a while.
	ActionBlockIP = "block_ip"
	// ActionRevokeFamily: the refresh-token family the firing event
	// names (field family) is revoked, and its access tokens with it.
	ActionRevokeFamily = "revoke_family"
	// ActionForceRelogin: every token of the firing event's subject is
	// revoked: they sign in again.
	ActionForceRelogin = "force_relogin"
)

// maxBlock bounds a block_ip response.
const maxBlock = 24 * time.Hour

// Distinct is a distinct-values threshold.
type Distinct struct {
	Key Key
	N   int
}

// Ratio is a share threshold.
type Ratio struct {
	Cond    Cond
	Percent int
}

// Key names a value of an event: a member (class, type, actor, subject,
// client, ip) or a field; several names separated by "|" take the first
// that is present.
type Key []string

func (k Key) String() string { return strings.Join(k, "|") }

// value returns e's value for k, and whether it has one (an empty string
// is none).
func (k Key) value(e *event.Event) (string, bool) {
	for _, name := range k {
		if v, ok := member(e, name); ok {
			return v, true
		}
	}
	return "", false
}

func member(e *event.Event, name string) (string, bool) {
	var v string
	switch name {
	case "class":
		v = string(e.Class)
	case "type":
		v = e.Type
	case "actor":
		v = e.Actor
	case "subject":
		v = e.Subject
	case "client":
		v = e.Client
	case "ip":
		v = e.IP
	default:
		switch f := e.Fields[name].(type) {
		case string:
			v = f
		case int64:
			v = strconv.FormatInt(f, 10)
		case bool:
			v = strconv.FormatBool(f)
		}
	}
	return v, v != ""
}

// Cond is one condition on an event.
type Cond struct {
	Key Key
	// Op is "=" (one of Values), "!=" (none of Values), "~" (a
	// space-separated list holding one of Values), "?" (present), "!?"
	// (absent), or an integer comparison ">=", "<" against Num.
	Op     string
	Values []string
	Num    int64
}

func (c Cond) holds(e *event.Event) bool {
	v, ok := c.Key.value(e)
	switch c.Op {
	case "?":
		return ok
	case "!?":
		return !ok
	case "=":
		return ok && slices.Contains(c.Values, v)
	case "!=":
		return !slices.Contains(c.Values, v)
	case "~":
		if !ok {
			return false
		}
		for w := range strings.FieldsSeq(v) {
			if slices.Contains(c.Values, w) {
				return true
			}
		}
		return false
	case ">=", "<":
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil {
			return false
		}
		if c.Op == ">=" {
			return n >= c.Num
		}
		return n < c.Num
	}
	return false
}

func (c Cond) String() string {
	switch c.Op {
	case "?":
		return c.Key.String() + "?"
	case "!?":
		return "!" + c.Key.String() + "?"
	case ">=", "<":
		return c.Key.String() + c.Op + strconv.FormatInt(c.Num, 10)
	}
	return c.Key.String() + c.Op + strings.Join(c.Values, ",")
}

// matches reports whether e matches one of r's alternatives.
func (r *Rule) matches(e *event.Event) bool {
	for _, alt := range r.Match {
		if !slices.ContainsFunc(alt, func(c Cond) bool { return !c.holds(e) }) {
			return true
		}
	}
	return false
}

// Rules is a parsed rules file.
type Rules struct {
	Rules []*Rule
	// Digest is the SHA-256 of the file, hex.
	Digest string
}

// RuleError is one problem in a rules file.
type RuleError struct {
	File string
	Line int
	Msg  string
}

func (e *RuleError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// ErrRules is wrapped by every error ParseRules returns for a bad file.
var ErrRules = errors.New("invalid detection rules")

//go:embed default.rules
var defaultRules string

// DefaultRulesText returns the built-in rules file, to start one's own
// from.
func DefaultRulesText() string { return defaultRules }

// DefaultRules returns the built-in rules (docs/detection.md).
func DefaultRules() *Rules {
	rs, err := ParseRules("default.rules", strings.NewReader(defaultRules))
	if err != nil {
		panic(err) // a test parses the file
	}
	return rs
}

// ParseRules reads a rules file; name is used in error messages. A file
// with any error is refused whole, with every problem (up to 20) named by
// its line.
func ParseRules(name string, r io.Reader) (*Rules, error) {
	p := &rulesParser{file: name, rs: &Rules{}}
	h := sha256.New()
	linefile.Scan(io.TeeReader(r, h), maxRulesLine, maxRulesBytes, p.line, func(n int, msg string) { p.errorf(n, "%s", msg) })
	p.finish()
	p.rs.Digest = hex.EncodeToString(h.Sum(nil))
	if !p.versioned && len(p.errs) == 0 {
		p.errorf(1, "the file is empty; it must start with %q", RulesVersion)
	}
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b error) int { return a.(*RuleError).Line - b.(*RuleError).Line })
		p.errs = p.errs[:min(len(p.errs), maxRulesErrors)]
		return nil, fmt.Errorf("%w:\n%w", ErrRules, errors.Join(p.errs...))
	}
	return p.rs, nil
}

type rulesParser struct {
	file      string
	rs        *Rules
	errs      []error
	versioned bool
	rule      *Rule
	seen      map[string]int // directives of the current rule, by line
	names     map[string]int
}

var (
	ruleName  = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
	fieldName = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
	condRE    = regexp.MustCompile(`^(!?)([a-z0-9_|]+)(\?|!=|=|~|>=|<)(.*)$`)
)

func (p *rulesParser) errorf(line int, format string, args ...any) {
	if len(p.errs) < 10*maxRulesErrors {
		p.errs = append(p.errs, &RuleError{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
}

func (p *rulesParser) line(l linefile.Line) {
	w := l.Words
	if !p.versioned {
		if l.Indented || strings.Join(w, " ") != RulesVersion {
			p.errorf(l.N, "the first directive must be %q", RulesVersion)
		}
		p.versioned = true
		return
	}
	if l.Indented {
		if p.rule == nil {
			p.errorf(l.N, "%s belongs to a rule: put it under one", w[0])
			return
		}
		p.directive(l.N, w[0], w[1:])
		return
	}
	switch w[0] {
	case "rule":
		p.finish()
		if len(w) != 2 || !ruleName.MatchString(w[1]) {
			p.errorf(l.N, "rule takes one name of [a-z0-9_]{1,64}")
			return
		}
		if prev, ok := p.names[w[1]]; ok {
			p.errorf(l.N, "rule %s is already defined on line %d", w[1], prev)
		}
		if p.names == nil {
			p.names = map[string]int{}
		}
		p.names[w[1]] = l.N
		p.rule = &Rule{Name: w[1], Line: l.N, Params: map[string]string{}}
		p.seen = map[string]int{}
	case "custos-rules":
		p.errorf(l.N, "%q may appear only once, first", RulesVersion)
	default:
		p.errorf(l.N, "unknown directive %q (a rule's directives are indented under it)", w[0])
	}
}

func (p *rulesParser) directive(n int, name string, args []string) {
	r := p.rule
	if prev, ok := p.seen[name]; ok && !slices.Contains([]string{"match", "distinct", "param"}, name) {
		p.errorf(n, "%s is already set for this rule (line %d)", name, prev)
		return
	}
	p.seen[name] = n
	switch name {
	case "title", "reference":
		if len(args) == 0 {
			p.errorf(n, "%s takes text", name)
			return
		}
		if name == "title" {
			r.Title = strings.Join(args, " ")
		} else {
			r.Reference = strings.Join(args, " ")
		}
	case "severity":
		if len(args) != 1 || !Severity(args[0]).valid() {
			p.errorf(n, "severity takes one of critical, high, medium, low")
			return
		}
		r.Severity = Severity(args[0])
	case "match":
		if len(args) == 0 {
			p.errorf(n, "match takes one or more conditions")
			return
		}
		var alt []Cond
		for _, a := range args {
			c, err := parseCond(a)
			if err != nil {
				p.errorf(n, "condition %q: %v", a, err)
				return
			}
			alt = append(alt, c)
		}
		r.Match = append(r.Match, alt)
	case "window":
		if len(args) < 1 || len(args) == 2 || len(args) > 2 && args[1] != "by" {
			p.errorf(n, "window takes a duration, then optionally by and keys: window 5m by ip")
			return
		}
		d, err := time.ParseDuration(args[0])
		if err != nil || d < time.Second || d > MaxWindow {
			p.errorf(n, "window %q: want a duration from 1s to %v", args[0], MaxWindow)
			return
		}
		r.Window = d
		if len(args) > 2 {
			if r.By = p.keys(n, args[2:]); r.By == nil {
				return
			}
		}
	case "count":
		if len(args) != 1 {
			p.errorf(n, "count takes one number")
			return
		}
		r.Count = p.positive(n, args[0])
	case "distinct":
		if len(args) != 2 {
			p.errorf(n, "distinct takes a key and a number: distinct subject 20")
			return
		}
		k := p.keys(n, args[:1])
		if k == nil {
			return
		}
		if slices.ContainsFunc(r.Distinct, func(d Distinct) bool { return d.Key.String() == k[0].String() }) {
			p.errorf(n, "distinct %s is already set", k[0])
			return
		}
		r.Distinct = append(r.Distinct, Distinct{Key: k[0], N: p.positive(n, args[1])})
	case "ratio":
		if len(args) != 2 || !strings.HasSuffix(args[1], "%") {
			p.errorf(n, "ratio takes a condition and a percentage: ratio status>=400 40%%")
			return
		}
		c, err := parseCond(args[0])
		if err != nil {
			p.errorf(n, "condition %q: %v", args[0], err)
			return
		}
		pct, err := strconv.Atoi(strings.TrimSuffix(args[1], "%"))
		if err != nil || pct < 1 || pct > 100 {
			p.errorf(n, "ratio %q: want a percentage from 1%% to 100%%", args[1])
			return
		}
		r.Ratio = &Ratio{Cond: c, Percent: pct}
	case "group":
		if len(args) == 0 {
			p.errorf(n, "group takes one or more keys")
			return
		}
		r.Group = p.keys(n, args)
	case "use":
		if len(args) != 1 {
			p.errorf(n, "use takes the name of a rule written in Go")
			return
		}
		if _, ok := codeRules[args[0]]; !ok {
			p.errorf(n, "use %q: no such rule (known: %s)", args[0], strings.Join(codeRuleNames(), ", "))
			return
		}
		r.Use = args[0]
	case "response":
		resp, err := parseResponse(args)
		if err != nil {
			p.errorf(n, "%v", err)
			return
		}
		r.Response = resp
	case "param":
		if len(args) != 2 || !fieldName.MatchString(args[0]) {
			p.errorf(n, "param takes a name and a value: param retired_grace 15m")
			return
		}
		if _, dup := r.Params[args[0]]; dup {
			p.errorf(n, "param %s is already set", args[0])
			return
		}
		r.Params[args[0]] = args[1]
	default:
		p.errorf(n, "unknown rule directive %q", name)
	}
}

func parseResponse(args []string) (*Response, error) {
	switch {
	case len(args) == 2 && args[0] == ActionBlockIP:
		d, err := time.ParseDuration(args[1])
		if err != nil || d < time.Minute || d > maxBlock {
			return nil, fmt.Errorf("response block_ip %q: want a duration from 1m to %v", args[1], maxBlock)
		}
		return &Response{Action: ActionBlockIP, For: d}, nil
	case len(args) == 1 && (args[0] == ActionRevokeFamily || args[0] == ActionForceRelogin):
		return &Response{Action: args[0]}, nil
	}
	return nil, errors.New("response takes block_ip DURATION, revoke_family or force_relogin")
}

// keys parses keys: names of [a-z0-9_], alternatives joined by "|".
func (p *rulesParser) keys(n int, args []string) []Key {
	var out []Key
	for _, a := range args {
		k, err := parseKey(a)
		if err != nil {
			p.errorf(n, "key %q: %v", a, err)
			return nil
		}
		out = append(out, k)
	}
	return out
}

func parseKey(s string) (Key, error) {
	k := Key(strings.Split(s, "|"))
	for _, name := range k {
		if !fieldName.MatchString(name) {
			return nil, errors.New("want names of [a-z0-9_]{1,64}, alternatives joined by |")
		}
	}
	return k, nil
}

func parseCond(s string) (Cond, error) {
	m := condRE.FindStringSubmatch(s)
	if m == nil {
		return Cond{}, errors.New("want KEY=V1,V2, KEY!=V, KEY~WORD, KEY>=N, KEY<N, KEY? or !KEY?")
	}
	neg, key, op, rest := m[1] == "!", m[2], m[3], m[4]
	k, err := parseKey(key)
	if err != nil {
		return Cond{}, err
	}
	c := Cond{Key: k, Op: op}
	switch {
	case op == "?":
		if rest != "" {
			return Cond{}, errors.New("nothing may follow ?")
		}
		if neg {
			c.Op = "!?"
		}
		return c, nil
	case neg:
		return Cond{}, errors.New("! only negates KEY?; use KEY!=V")
	case op == ">=" || op == "<":
		if c.Num, err = strconv.ParseInt(rest, 10, 64); err != nil {
			return Cond{}, fmt.Errorf("%s wants an integer", op)
		}
		return c, nil
	}
	c.Values = strings.Split(rest, ",")
	if slices.Contains(c.Values, "") {
		return Cond{}, errors.New("empty value")
	}
	return c, nil
}

// maxThreshold bounds count and distinct: a group keeps a few times its
// threshold in memory.
const maxThreshold = 10_000

func (p *rulesParser) positive(n int, s string) int {
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 || v > maxThreshold {
		p.errorf(n, "%q: want a number from 1 to %d", s, maxThreshold)
		return 0
	}
	return v
}

// finish checks the rule just read and adds it.
func (p *rulesParser) finish() {
	r := p.rule
	if r == nil {
		return
	}
	p.rule = nil
	bad := func(format string, args ...any) {
		p.errorf(r.Line, "rule %s: "+format, append([]any{r.Name}, args...)...)
	}
	if r.Severity == "" {
		bad("needs a severity")
	}
	if r.Title == "" {
		bad("needs a title")
	}
	if r.Reference == "" {
		bad("needs a reference: where its signal and threshold come from")
	}
	aggregated := r.Count > 0 || len(r.Distinct) > 0 || r.Ratio != nil
	switch {
	case r.Use != "":
		if len(r.Match) > 0 || r.Window > 0 || aggregated || len(r.Group) > 0 {
			bad("a rule written in Go (use) takes only title, severity, reference and param")
		}
		if err := codeRules[r.Use].check(r.Params); err != nil {
			bad("%v", err)
		}
	case len(r.Params) > 0:
		bad("param is only for rules written in Go (use)")
	case len(r.Match) == 0:
		bad("needs match, or use")
	case aggregated && r.Window == 0:
		bad("count, distinct and ratio need a window")
	case r.Window > 0 && !aggregated:
		bad("a window needs count, distinct or ratio")
	case r.Window > 0 && len(r.Group) > 0:
		bad("an aggregated rule is grouped by its window's by keys, not group")
	}
	p.rs.Rules = append(p.rs.Rules, r)
}
