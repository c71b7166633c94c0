package guard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custos-dev/custos/internal/linefile"
)

// PolicyVersion is the first line of every policy file
// (docs/spec/guard-policy.md).
const PolicyVersion = "custos-guard-policy v1"

// Limits on a policy file.
const (
	maxPolicyLine   = 4096
	maxPolicyBytes  = 1 << 20
	maxPolicyErrors = 20
	// maxCollectedErrors bounds the errors kept while parsing; the first
	// maxPolicyErrors of them by line are reported.
	maxCollectedErrors = 10_000
	maxRate            = 1_000_000
)

// Mode says what the guard does with a request that fails a check.
type Mode int

const (
	// Enforce refuses it.
	Enforce Mode = iota
	// Monitor forwards it, and records and raises the failure.
	Monitor
)

func (m Mode) String() string {
	if m == Monitor {
		return "monitor"
	}
	return "enforce"
}

func parseMode(s string) (Mode, bool) {
	switch s {
	case "enforce":
		return Enforce, true
	case "monitor":
		return Monitor, true
	}
	return Enforce, false
}

// Category is a kind of personal data a route returns.
type Category string

// The data categories a policy may name; custom ones are spelled "x-...".
var knownCategories = []Category{
	"name", "email", "phone", "address", "entrance_code", "third_party_address",
	"third_party_name", "third_party_phone", "order_history", "payment_method",
	"birth_date", "gender", "account_id",
}

var customCategory = regexp.MustCompile(`^x-[a-z0-9][a-z0-9_-]{0,62}$`)

func validCategory(c string) bool {
	return slices.Contains(knownCategories, Category(c)) || customCategory.MatchString(c)
}

// isPurposeCode reports whether s is a purpose code, as starts a declared
// purpose (PurposeHeader) and as a route's purpose directive lists:
// [a-z0-9][a-z0-9_-]{0,63}. It runs on every staff read, so without a
// regular expression.
func isPurposeCode(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] == '_' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// RateKey is what a route's rate limit counts requests by.
type RateKey int

const (
	// PerClient counts by the token's client id.
	PerClient RateKey = iota
	// PerSubject counts by the token's subject.
	PerSubject
	// PerIP counts by the client's IP address.
	PerIP
)

func (k RateKey) String() string {
	switch k {
	case PerSubject:
		return "subject"
	case PerIP:
		return "ip"
	}
	return "client"
}

// Rate is a route's rate limit: at most N requests per Per, in bursts of up
// to Burst, counted by Key.
type Rate struct {
	N     int
	Per   time.Duration
	Burst int
	Key   RateKey
}

// Route is one route of a policy.
type Route struct {
	// Pattern is the route's net/http.ServeMux pattern: "GET /me/profile".
	Pattern string
	// Line is where the route starts in its policy file.
	Line int
	// SubjectParam names the pattern wildcard that holds the data
	// subject; empty when the data subject is the token's own subject.
	SubjectParam string
	// Scopes must all be held by a token reading its own subject's data.
	Scopes []string
	// StaffScopes must all be held by a token reading another subject's
	// data; if empty, only the data subject may read.
	StaffScopes []string
	// Purposes are the purpose codes a token reading another subject's
	// data may declare; if empty, any well-formed code.
	Purposes []string
	// Data is the categories of personal data the route returns.
	Data []Category
	// Rate, if not nil, limits requests to the route.
	Rate *Rate
	// Mode is the route's mode.
	Mode Mode

	modeSet bool // by the route, not the policy's default
}

// Policy is a parsed policy file. It is immutable and safe for concurrent
// use.
type Policy struct {
	// Mode is the default mode of the policy's routes.
	Mode Mode
	// Digest is the SHA-256 of the policy file, in hex: which policy a
	// guard ran is recorded by it.
	Digest string
	// Routes are the routes in the order the file gives them.
	Routes []*Route

	mux *http.ServeMux
}

// Match is a request's route and the data subject its path names.
type Match struct {
	Route *Route
	// Subject is the value of the route's SubjectParam wildcard; empty
	// when the route's data subject is the token's own.
	Subject string
}

type matchKey struct{}

// routeHandler records the route a request matched.
type routeHandler struct{ route *Route }

func (h routeHandler) ServeHTTP(_ http.ResponseWriter, r *http.Request) {
	if m, ok := r.Context().Value(matchKey{}).(*Match); ok {
		m.Route = h.route
		if h.route.SubjectParam != "" {
			m.Subject = r.PathValue(h.route.SubjectParam)
		}
	}
}

// discard is a ResponseWriter for matching: what the mux would answer to an
// unmatched request (404, 405, a redirect to a cleaned path) is dropped.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header {
	if d.h == nil {
		d.h = make(http.Header)
	}
	return d.h
}
func (*discard) Write(b []byte) (int, error) { return len(b), nil }
func (*discard) WriteHeader(int)             {}

// Match returns the route r matches, by net/http.ServeMux's rules. A request
// whose path the mux would first clean or redirect matches no route.
func (p *Policy) Match(r *http.Request) (Match, bool) {
	var m Match
	p.mux.ServeHTTP(&discard{}, r.WithContext(context.WithValue(r.Context(), matchKey{}, &m)))
	return m, m.Route != nil
}

// PolicyError is one problem in a policy file.
type PolicyError struct {
	File string
	Line int
	Msg  string
}

func (e *PolicyError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// ErrPolicy is wrapped by every error ParsePolicy returns for a bad file.
var ErrPolicy = errors.New("invalid guard policy")

// ParsePolicy reads a policy file (docs/spec/guard-policy.md); name is
// used in error messages. A file with any error is refused as a whole: the
// error lists every problem found (up to 20), each a *PolicyError naming its
// line, and wraps ErrPolicy.
func ParsePolicy(name string, r io.Reader) (*Policy, error) {
	ps := &policyParser{file: name, p: &Policy{mux: http.NewServeMux()}, seen: map[string]int{}}
	h := sha256.New()
	ps.parse(io.TeeReader(io.LimitReader(r, maxPolicyBytes+1), h))
	ps.p.Digest = hex.EncodeToString(h.Sum(nil))
	ps.finishRoute()
	if !ps.versioned && len(ps.errs) == 0 {
		ps.errorf(1, "the file is empty; it must start with %q", PolicyVersion)
	}
	if len(ps.errs) > 0 {
		slices.SortStableFunc(ps.errs, func(a, b error) int {
			return a.(*PolicyError).Line - b.(*PolicyError).Line
		})
		ps.errs = ps.errs[:min(len(ps.errs), maxPolicyErrors)]
		return nil, fmt.Errorf("%w:\n%w", ErrPolicy, errors.Join(ps.errs...))
	}
	for _, rt := range ps.p.Routes {
		if !rt.modeSet {
			rt.Mode = ps.p.Mode
		}
	}
	return ps.p, nil
}

type policyParser struct {
	file      string
	p         *Policy
	errs      []error // each a *PolicyError
	versioned bool
	modeSet   bool

	route    *parsedRoute
	skipping bool           // the lines of a route whose route line was refused
	seen     map[string]int // directives of the current route, with their line
}

type parsedRoute struct {
	*Route
	wildcards []string
	subject   bool
}

func (ps *policyParser) errorf(line int, format string, args ...any) {
	if len(ps.errs) < maxCollectedErrors {
		ps.errs = append(ps.errs, &PolicyError{File: ps.file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
}

func (ps *policyParser) parse(r io.Reader) {
	linefile.Scan(r, maxPolicyLine, maxPolicyBytes, ps.line, func(n int, msg string) { ps.errorf(n, "%s", msg) })
}

func (ps *policyParser) line(l linefile.Line) {
	n, words, indented := l.N, l.Words, l.Indented
	if !ps.versioned {
		if indented || strings.Join(words, " ") != PolicyVersion {
			ps.errorf(n, "the first directive must be %q", PolicyVersion)
		}
		ps.versioned = true
		return
	}
	if indented {
		ps.routeDirective(n, words)
		return
	}
	switch words[0] {
	case "custos-guard-policy":
		ps.errorf(n, "%q may appear only once, first", PolicyVersion)
	case "mode":
		if ps.modeSet {
			ps.errorf(n, "the default mode is already set")
		}
		if ps.route != nil || len(ps.p.Routes) > 0 || ps.skipping {
			// An unindented "mode monitor" meant for a route would
			// otherwise switch every route to monitor.
			ps.errorf(n, "the default mode must come before the first route; indent it to set this route's mode")
			ps.modeSet = true
			return
		}
		ps.modeSet = true
		if len(words) != 2 {
			ps.errorf(n, "mode takes one word: enforce or monitor")
			return
		}
		m, ok := parseMode(words[1])
		if !ok {
			ps.errorf(n, "unknown mode %q: want enforce or monitor", words[1])
		}
		ps.p.Mode = m
	case "route":
		ps.finishRoute()
		ps.startRoute(n, words[1:])
	default:
		if isRouteDirective(words[0]) {
			ps.errorf(n, "%s belongs to a route: indent it under one", words[0])
			return
		}
		ps.errorf(n, "unknown directive %q", words[0])
	}
}

func isRouteDirective(w string) bool {
	switch w {
	case "subject", "scope", "staff-scope", "purpose", "data", "rate":
		return true
	}
	return false
}

var methodToken = regexp.MustCompile(`^[A-Z]{1,16}$`)

func (ps *policyParser) startRoute(n int, args []string) {
	ps.seen = map[string]int{}
	ps.skipping = true
	if len(args) != 2 {
		ps.errorf(n, "route takes a method and a path: route GET /me/profile")
		return
	}
	method, path := args[0], args[1]
	if !methodToken.MatchString(method) {
		ps.errorf(n, "method %q: want an HTTP method in capitals, such as GET", method)
		return
	}
	if !strings.HasPrefix(path, "/") {
		ps.errorf(n, "path %q must start with / (no host)", path)
		return
	}
	rt := &parsedRoute{Route: &Route{Pattern: method + " " + path, Line: n}}
	if err := register(ps.p.mux, rt.Pattern, routeHandler{rt.Route}); err != nil {
		ps.errorf(n, "%s", err)
		return
	}
	for _, seg := range strings.Split(path, "/") {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			name = strings.TrimSuffix(strings.TrimSuffix(name, "}"), "...")
			if name != "$" {
				rt.wildcards = append(rt.wildcards, name)
			}
		}
	}
	ps.route, ps.skipping = rt, false
}

// register adds a pattern to mux, turning its panic on a malformed or
// conflicting pattern into an error.
func register(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("route %s: %v", pattern, p)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

func (ps *policyParser) routeDirective(n int, words []string) {
	rt := ps.route
	if rt == nil {
		if !ps.skipping {
			ps.errorf(n, "indented line outside a route")
		}
		return
	}
	d := words[0]
	if first, ok := ps.seen[d]; ok {
		ps.errorf(n, "%s is already set for this route (line %d)", d, first)
		return
	}
	ps.seen[d] = n
	args := words[1:]
	switch d {
	case "subject":
		ps.subject(n, rt, args)
	case "scope", "staff-scope":
		if len(args) == 0 {
			ps.errorf(n, "%s takes one or more scopes", d)
			return
		}
		for _, s := range args {
			if !validScope(s) {
				ps.errorf(n, "scope %q is not an OAuth scope token", s)
				return
			}
		}
		if d == "scope" {
			rt.Scopes = args
		} else {
			rt.StaffScopes = args
		}
	case "purpose":
		if len(args) == 0 {
			ps.errorf(n, "purpose takes one or more purpose codes")
			return
		}
		for _, c := range args {
			switch {
			case !isPurposeCode(c):
				ps.errorf(n, "purpose code %q: want a lowercase letter or digit, then up to 63 lowercase letters, digits, _ or -", c)
				return
			case slices.Contains(rt.Purposes, c):
				ps.errorf(n, "purpose code %q given twice", c)
				return
			}
			rt.Purposes = append(rt.Purposes, c)
		}
	case "data":
		if len(args) == 0 {
			ps.errorf(n, "data takes one or more categories")
			return
		}
		for _, c := range args {
			switch {
			case !validCategory(c):
				ps.errorf(n, "unknown data category %q (see docs/spec/guard-policy.md; custom ones start with x-)", c)
				return
			case slices.Contains(rt.Data, Category(c)):
				ps.errorf(n, "data category %q given twice", c)
				return
			}
			rt.Data = append(rt.Data, Category(c))
		}
	case "rate":
		rate, err := parseRate(args)
		if err != nil {
			ps.errorf(n, "rate: %v", err)
			return
		}
		rt.Rate = rate
	case "mode":
		if len(args) != 1 {
			ps.errorf(n, "mode takes one word: enforce or monitor")
			return
		}
		m, ok := parseMode(args[0])
		if !ok {
			ps.errorf(n, "unknown mode %q: want enforce or monitor", args[0])
			return
		}
		rt.Mode, rt.Route.modeSet = m, true
	case "route":
		ps.errorf(n, "route must not be indented")
	default:
		ps.errorf(n, "unknown route directive %q", d)
	}
}

func (ps *policyParser) subject(n int, rt *parsedRoute, args []string) {
	switch {
	case len(args) == 1 && args[0] == "token":
		rt.subject = true
	case len(args) == 2 && args[0] == "path":
		if !slices.Contains(rt.wildcards, args[1]) {
			ps.errorf(n, "subject path %s: the pattern %q has no wildcard {%s}", args[1], rt.Pattern, args[1])
			return
		}
		rt.SubjectParam, rt.subject = args[1], true
	default:
		ps.errorf(n, "subject takes \"token\" or \"path NAME\"")
	}
}

// finishRoute checks the route being read and adds it to the policy.
func (ps *policyParser) finishRoute() {
	rt := ps.route
	if rt == nil {
		return
	}
	ps.route = nil
	if _, ok := ps.seen["subject"]; !ok {
		ps.errorf(rt.Line, "route %s has no subject line", rt.Pattern)
	}
	if _, ok := ps.seen["data"]; !ok {
		ps.errorf(rt.Line, "route %s has no data line", rt.Pattern)
	}
	if line, ok := ps.seen["staff-scope"]; ok && rt.subject && rt.SubjectParam == "" {
		ps.errorf(line, "staff-scope has no effect on a route whose subject is the token's own: give it a subject path")
	}
	if line, ok := ps.seen["purpose"]; ok {
		if _, staff := ps.seen["staff-scope"]; !staff {
			ps.errorf(line, "purpose applies only to staff reads: give the route a staff-scope")
		}
	}
	if !rt.subject || len(rt.Data) == 0 {
		return
	}
	ps.p.Routes = append(ps.p.Routes, rt.Route)
}

// validScope reports whether s is an RFC 6749 scope token.
func validScope(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return s != ""
}

func isDigits(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r < '0' || r > '9' })
}

func parseRate(args []string) (*Rate, error) {
	if len(args) == 0 {
		return nil, errors.New("want N/UNIT [burst B] [per client|subject|ip]")
	}
	num, unit, ok := strings.Cut(args[0], "/")
	if !ok {
		return nil, fmt.Errorf("%q: want N/s, N/m or N/h", args[0])
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > maxRate || !isDigits(num) {
		return nil, fmt.Errorf("%q: N must be a whole number from 1 to %d", args[0], maxRate)
	}
	rate := &Rate{N: n, Burst: n}
	switch unit {
	case "s":
		rate.Per = time.Second
	case "m":
		rate.Per = time.Minute
	case "h":
		rate.Per = time.Hour
	default:
		return nil, fmt.Errorf("%q: the unit must be s, m or h", args[0])
	}
	rest := args[1:]
	if len(rest) >= 2 && rest[0] == "burst" {
		b, err := strconv.Atoi(rest[1])
		if err != nil || b < 1 || b > maxRate || !isDigits(rest[1]) {
			return nil, fmt.Errorf("burst %q: want a whole number from 1 to %d", rest[1], maxRate)
		}
		rate.Burst, rest = b, rest[2:]
	}
	if len(rest) >= 2 && rest[0] == "per" {
		switch rest[1] {
		case "client":
			rate.Key = PerClient
		case "subject":
			rate.Key = PerSubject
		case "ip":
			rate.Key = PerIP
		default:
			return nil, fmt.Errorf("per %q: want client, subject or ip", rest[1])
		}
		rest = rest[2:]
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("unexpected %q: want N/UNIT [burst B] [per client|subject|ip]", strings.Join(rest, " "))
	}
	return rate, nil
}
