package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/custos-dev/custos/internal/lru"
	"github.com/custos-dev/custos/verify"
)

// TokenVerifier checks an access token, receipt included.
// *verify.Verifier implements it.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*verify.Claims, error)
}

// Recorder makes access events durable. Record returns nil only once e is
// durable; the guard releases a response only after that.
type Recorder interface {
	Record(ctx context.Context, e Access) error
}

// Outcome is what the guard did with a request.
type Outcome string

const (
	// Forwarded: every check passed; the response was released.
	Forwarded Outcome = "forwarded"
	// Refused: a check failed and the route enforces.
	Refused Outcome = "refused"
	// Monitored: a check failed, but the route monitors, so the request
	// was forwarded and its response released.
	Monitored Outcome = "monitored"
)

// Reasons the guard refuses a request, beyond verify's (verify.Reason).
const (
	ReasonBadRequest        verify.Reason = "bad_request"         // a read (GET or HEAD) with a body: a smuggling attempt, or a broken client
	ReasonNoRoute           verify.Reason = "no_route"            // the policy names no route for it
	ReasonNoToken           verify.Reason = "no_token"            // no bearer token
	ReasonSubjectMismatch   verify.Reason = "subject_mismatch"    // another subject's data, without the route's staff scopes
	ReasonMissingScope      verify.Reason = "missing_scope"       // its own subject's data, without a scope the route requires
	ReasonMissingPurpose    verify.Reason = "missing_purpose"     // another subject's data without a declared purpose
	ReasonBadPurpose        verify.Reason = "bad_purpose"         // a malformed Custos-Purpose header, or several: bad input, refused on any route and in any mode
	ReasonPurposeNotAllowed verify.Reason = "purpose_not_allowed" // another subject's data, for a purpose code the route does not list
	ReasonRateLimited       verify.Reason = "rate_limited"        // the route's rate limit
	ReasonResponseTooLarge  verify.Reason = "response_too_large"  // the upstream's response is over MaxResponseBytes
	ReasonOverloaded        verify.Reason = "overloaded"          // the responses held at once would exceed MaxHeldBytes
	ReasonLogUnavailable    verify.Reason = "log_unavailable"     // the access event could not be made durable
	ReasonIPBlocked         verify.Reason = "ip_blocked"          // the client IP is blocked (Config.Blocked), for a token that verified
)

// PurposeHeader declares why a staff or service token reads another
// subject's data: "CODE" or "CODE: REFERENCE". CODE is a lowercase letter
// or digit, then up to 63 lowercase letters, digits, _ or - ("support",
// "fraud_review"), which a route's purpose directive may restrict;
// REFERENCE is free text such as a ticket number, printable UTF-8 without
// control characters, spaces around it ignored. The header is at most 200
// bytes and sent once; a malformed one is refused (ReasonBadPurpose) on any
// route, and a well-formed one is recorded whole in Access.Purpose.
const PurposeHeader = "Custos-Purpose"

// Headers the guard sets on a forwarded request, replacing any the client
// sent, so that the upstream knows whom the verified token names.
const (
	SubjectHeader     = "Custos-Subject"      // the token's subject
	ClientHeader      = "Custos-Client"       // the token's client id
	DataSubjectHeader = "Custos-Data-Subject" // whose data the route returns
)

// Access is the record of one guarded request: a read, or a refusal.
type Access struct {
	Time    time.Time
	Outcome Outcome
	// Reason is why a check failed; empty when every check passed.
	Reason verify.Reason
	Mode   Mode
	// Route is the matched pattern; empty when none matched.
	Route  string
	Method string
	Path   string
	// From the token, when it verified (or, for a forged or revoked
	// token, as it claims).
	JTI, Subject, ClientID, KeyID string
	// SessionID is the token's sid: the sign-in it came from.
	SessionID string
	// IssuedAt is the iat of a forged or revoked token, as it claims;
	// zero for a token that verified.
	IssuedAt time.Time
	// DataSubject is whose data the route returns.
	DataSubject string
	Data        []Category
	Purpose     string
	// Status and Size of the response released (0 when refused).
	Status    int
	Size      int64
	ClientIP  string
	UserAgent string
	// Count, when not 0, makes this the summary of Count refusals with
	// Reason from ClientIP in the Window that began at Time, past the
	// refusals the IP has recorded one by one (Config.RefusalsPerIP).
	// A summary names no route, path or token.
	Count  int
	Window time.Duration
}

// Defaults.
const (
	// DefaultMaxResponseBytes bounds a response the guard holds until its
	// access event is durable.
	DefaultMaxResponseBytes = 8 << 20
	// DefaultMaxHeldBytes bounds all the responses the guard holds at
	// once.
	DefaultMaxHeldBytes = 256 << 20
	// DefaultMaxRateKeys bounds the rate-limit buckets kept per route.
	DefaultMaxRateKeys = 100_000
	maxPurposeBytes    = 200
	maxUserAgentBytes  = 256
)

// Config configures a Guard.
type Config struct {
	Policy   *Policy
	Verifier TokenVerifier
	Recorder Recorder
	// MaxResponseBytes; 0 means DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// MaxHeldBytes; 0 means DefaultMaxHeldBytes.
	MaxHeldBytes int64
	// MaxRateKeys; 0 means DefaultMaxRateKeys. It also bounds the client
	// IPs whose refusals are counted.
	MaxRateKeys int
	// RefusalsPerIP is how many refusals of requests without a verified
	// token a client IP has recorded one by one per RefusalWindow; past
	// it, they are counted and recorded as one summary per reason when
	// the window ends (Access.Count). Refusals of tokens signed with
	// custos's keys but not issued, or revoked, are always recorded one
	// by one. 0 means DefaultRefusalsPerIP; negative records every
	// refusal one by one.
	RefusalsPerIP int
	// RefusalWindow; 0 means DefaultRefusalWindow.
	RefusalWindow time.Duration
	// Blocked, if set, reports whether a client IP is blocked: a request
	// from it whose token verifies is refused (ReasonIPBlocked). A token
	// that fails is refused for its own reason first, which says more.
	Blocked func(ip string, now time.Time) bool
	// Now; nil means time.Now.
	Now func() time.Time
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Guard is net/http middleware that lets a response out only as its
// policy allows, and only once the access is recorded.
type Guard struct {
	cfg      Config
	limits   map[*Route]*limiter
	held     atomic.Int64 // bytes of responses held now, across requests
	refusals *refusalBudget
}

// New returns a guard.
func New(cfg Config) (*Guard, error) {
	if cfg.Policy == nil || cfg.Verifier == nil || cfg.Recorder == nil {
		return nil, errors.New("guard: Config needs a Policy, a Verifier and a Recorder")
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.MaxRateKeys == 0 {
		cfg.MaxRateKeys = DefaultMaxRateKeys
	}
	if cfg.MaxHeldBytes == 0 {
		cfg.MaxHeldBytes = DefaultMaxHeldBytes
	}
	if cfg.RefusalsPerIP == 0 {
		cfg.RefusalsPerIP = DefaultRefusalsPerIP
	}
	if cfg.RefusalWindow == 0 {
		cfg.RefusalWindow = DefaultRefusalWindow
	}
	if cfg.MaxResponseBytes < 0 || cfg.MaxRateKeys < 0 || cfg.MaxHeldBytes < 0 || cfg.RefusalWindow < 0 {
		return nil, errors.New("guard: MaxResponseBytes, MaxHeldBytes, MaxRateKeys and RefusalWindow must be positive")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Guard{cfg: cfg, limits: make(map[*Route]*limiter)}
	if cfg.RefusalsPerIP > 0 {
		g.refusals = &refusalBudget{perIP: cfg.RefusalsPerIP, window: cfg.RefusalWindow, flush: g.flushSummary,
			ips: lru.New[string, *ipRefusals](cfg.MaxRateKeys)}
	}
	for _, rt := range cfg.Policy.Routes {
		if rt.Rate != nil {
			g.limits[rt] = &limiter{rate: rt.Rate, buckets: lru.New[string, *rate.Limiter](cfg.MaxRateKeys)}
		}
	}
	return g, nil
}

// Wrap returns a handler that guards upstream.
func (g *Guard) Wrap(upstream http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.serve(w, r, upstream) })
}

func (g *Guard) serve(w http.ResponseWriter, r *http.Request, upstream http.Handler) {
	ctx := r.Context()
	a := Access{
		Time: g.cfg.Now(), Method: r.Method, Path: r.URL.Path, Mode: g.cfg.Policy.Mode,
		ClientIP: clientIP(r), UserAgent: clip(r.UserAgent(), maxUserAgentBytes),
	}
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && (r.ContentLength != 0 || len(r.TransferEncoding) > 0) ||
		!plainPath(r.URL) {
		// net/http lets Transfer-Encoding override a Content-Length
		// sent with it; a read has no body, so either is refused. A
		// path the upstream might decode into another (encoded dots,
		// slashes or backslashes) is refused too.
		a.Mode = Enforce
		g.refuse(ctx, w, a, ReasonBadRequest, http.StatusBadRequest)
		return
	}
	m, ok := g.cfg.Policy.Match(r)
	if !ok {
		// Nothing the policy names: never forwarded, whatever the mode.
		a.Mode = Enforce
		g.refuse(ctx, w, a, ReasonNoRoute, http.StatusNotFound)
		return
	}
	rt := m.Route
	a.Route, a.Mode, a.Data = rt.Pattern, rt.Mode, rt.Data
	reason, status := g.check(ctx, r, rt, m, &a)
	if reason == ReasonBadPurpose {
		// Bad input, like a bad request: never forwarded, whatever
		// the mode.
		a.Mode = Enforce
	}
	if reason != "" && a.Mode == Enforce {
		g.refuse(ctx, w, a, reason, status)
		return
	}
	if reason != "" {
		a.Outcome, a.Reason = Monitored, reason
	} else {
		a.Outcome = Forwarded
	}
	g.forward(ctx, w, r, upstream, a)
}

// check runs the route's checks and fills a with what the token says. It
// returns the reason and status of the first failure, or "".
func (g *Guard) check(ctx context.Context, r *http.Request, rt *Route, m Match, a *Access) (verify.Reason, int) {
	// Whose data the path asks for is recorded even if the token fails:
	// a forged token's target is part of an incident's scope.
	if rt.SubjectParam != "" {
		a.DataSubject = m.Subject
	}
	token, reason := bearer(r)
	if reason != "" {
		return reason, http.StatusUnauthorized
	}
	c, err := g.cfg.Verifier.Verify(ctx, token)
	if err != nil {
		reason := verify.ReasonOf(err)
		if reason == "" || reason == verify.ReasonUnavailable {
			g.cfg.Logger.WarnContext(ctx, "guard: token could not be checked", "route", rt.Pattern, "err", err)
			return verify.ReasonUnavailable, http.StatusServiceUnavailable
		}
		if e, ok := errors.AsType[*verify.Error](err); ok && e.Claims != nil {
			// A token signed with a custos key but never issued, or
			// revoked: whom it claims to be, and whose data it meant
			// to read, are recorded (and, on a monitor route, what
			// the upstream is told), never trusted.
			identify(a, rt, e.Claims)
			a.IssuedAt = e.Claims.IssuedAt
		}
		return reason, http.StatusUnauthorized
	}
	identify(a, rt, c)
	if g.cfg.Blocked != nil && g.cfg.Blocked(a.ClientIP, a.Time) {
		return ReasonIPBlocked, http.StatusForbidden
	}
	// A malformed purpose is bad input, refused on any route; it is
	// checked once the token verifies, so that a forged or stolen token
	// is refused and recorded for what it is, whatever it sent with it.
	purpose, code, ok := declaredPurpose(r)
	if !ok {
		return ReasonBadPurpose, http.StatusBadRequest
	}
	a.Purpose = purpose
	// Only a customer's token (one from a sign-in, with a session) reads
	// its own subject's data: a service's token names its client as its
	// subject, and a client id must never stand for a customer.
	if c.Subject != "" && c.SessionID != "" && c.Subject == a.DataSubject {
		if !hasAll(c, rt.Scopes) {
			return ReasonMissingScope, http.StatusForbidden
		}
	} else {
		// Another subject's data: only with the route's staff scopes,
		// and a declared purpose whose code the route allows.
		switch {
		case len(rt.StaffScopes) == 0 || !hasAll(c, rt.StaffScopes):
			return ReasonSubjectMismatch, http.StatusForbidden
		case a.Purpose == "":
			return ReasonMissingPurpose, http.StatusForbidden
		case len(rt.Purposes) > 0 && !slices.Contains(rt.Purposes, code):
			return ReasonPurposeNotAllowed, http.StatusForbidden
		}
	}
	if l := g.limits[rt]; l != nil && !l.allow(rateKey(rt.Rate.Key, a), a.Time) {
		return ReasonRateLimited, http.StatusTooManyRequests
	}
	return "", 0
}

// forward runs upstream into a buffer, records the access and only then
// releases the response. The upstream gets the verified identity in the
// Custos-* headers, never what the client claimed there.
func (g *Guard) forward(ctx context.Context, w http.ResponseWriter, r *http.Request, upstream http.Handler, a Access) {
	r = withIdentity(r, a)
	buf := &bufferedResponse{header: make(http.Header), max: g.cfg.MaxResponseBytes, held: &g.held, maxHeld: g.cfg.MaxHeldBytes}
	defer buf.release()
	upstream.ServeHTTP(buf, r)
	switch {
	case buf.overloaded:
		g.refuse(ctx, w, a, ReasonOverloaded, http.StatusServiceUnavailable)
		return
	case buf.tooLarge:
		g.refuse(ctx, w, a, ReasonResponseTooLarge, http.StatusBadGateway)
		return
	}
	a.Status, a.Size = buf.status(), int64(buf.body.Len())
	if err := g.cfg.Recorder.Record(ctx, a); err != nil {
		// Fail closed: no record, no data.
		g.cfg.Logger.ErrorContext(ctx, "guard: access not recorded; response withheld", "route", a.Route, "err", err)
		writeError(w, ReasonLogUnavailable, http.StatusServiceUnavailable)
		return
	}
	h := w.Header()
	for k, v := range buf.header {
		h[k] = v
	}
	if r.Method != http.MethodHead {
		h["Content-Length"] = []string{strconv.Itoa(buf.body.Len())}
	}
	w.WriteHeader(a.Status)
	w.Write(buf.body.Bytes())
}

// withIdentity returns the request to forward: r with a header of its own
// that carries the verified identity in the Custos-* headers, never what
// the client claimed there. Headers the client names in Connection are
// removed by a proxy after this; they are removed now, and Connection
// itself, so that no header set here can be removed by the client.
func withIdentity(r *http.Request, a Access) *http.Request {
	var dropped []string // canonical names listed in Connection
	for _, v := range r.Header["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			dropped = append(dropped, textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name)))
		}
	}
	out := new(http.Request)
	*out = *r
	out.Header = make(http.Header, len(r.Header)+3)
	for k, v := range r.Header {
		if k == "Connection" || slices.Contains(dropped, k) {
			continue
		}
		// Custos_Subject is Custos-Subject to many servers.
		var buf [64]byte
		norm := headerNorm(buf[:0], k)
		if bytes.HasPrefix(norm, []byte("custos-")) && k != PurposeHeader || routingHeaders[string(norm)] {
			continue
		}
		out.Header[k] = v
	}
	// One backing array for the three values, each its own full slice, so
	// that appending to one cannot write into the next.
	vals := [...]string{a.Subject, a.ClientID, a.DataSubject}
	for i, name := range [...]string{SubjectHeader, ClientHeader, DataSubjectHeader} {
		if vals[i] != "" {
			out.Header[name] = vals[i : i+1 : i+1]
		}
	}
	return out
}

// refuse records a refusal, or counts it into its IP's summary, and
// answers it. A refusal that cannot be recorded is still refused.
func (g *Guard) refuse(ctx context.Context, w http.ResponseWriter, a Access, reason verify.Reason, status int) {
	a.Outcome, a.Reason, a.Status, a.Size = Refused, reason, status, 0
	if !g.refusals.record(a) {
		writeError(w, reason, status) // counted into its IP's summary
		return
	}
	if err := g.cfg.Recorder.Record(ctx, a); err != nil {
		g.cfg.Logger.ErrorContext(ctx, "guard: refusal not recorded", "route", a.Route, "reason", reason, "err", err)
	}
	writeError(w, reason, status)
}

func writeError(w http.ResponseWriter, reason verify.Reason, status int) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	switch {
	case reason == ReasonNoToken:
		h.Set("WWW-Authenticate", "Bearer") // RFC 6750 §3.1: no error without credentials
	case status == http.StatusUnauthorized:
		h.Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="invalid_token", error_description=%q`, string(reason)))
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": string(reason)})
}

// routingHeaders are headers some servers route by instead of the request
// line; the guard checked the request line, so they are never forwarded.
// headerNorm appends header name k to b in lower case with "_" as "-", as
// many servers read it.
func headerNorm(b []byte, k string) []byte {
	for i := range len(k) {
		c := k[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		b = append(b, c)
	}
	return b
}

var routingHeaders = map[string]bool{
	"x-original-url": true, "x-rewrite-url": true, "x-http-method-override": true,
	"x-http-method": true, "x-method-override": true,
}

// plainPath reports whether u's path means the same to any upstream: no
// encoded dot, slash or backslash, no backslash, no control character.
// The mux already refuses unencoded dot segments and empty segments.
func plainPath(u *url.URL) bool {
	raw := strings.ToLower(u.EscapedPath())
	if strings.Contains(raw, "%2e") || strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") {
		return false
	}
	return !strings.ContainsFunc(u.Path, func(r rune) bool { return r == '\\' || r < 0x20 || r == 0x7f })
}

// bearer returns the request's bearer token (RFC 6750 §2.1), or why there
// is none: no_token without one, malformed for a Bearer credential that is
// not a single token or for several Authorization headers.
func bearer(r *http.Request) (string, verify.Reason) {
	vals := r.Header.Values("Authorization")
	switch {
	case len(vals) == 0:
		return "", ReasonNoToken
	case len(vals) > 1:
		return "", verify.ReasonMalformed
	}
	scheme, token, _ := strings.Cut(vals[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", ReasonNoToken
	}
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", verify.ReasonMalformed
	}
	return token, ""
}

// declaredPurpose returns the request's PurposeHeader and its code, both
// empty when it has none; ok is false for a malformed header or several.
func declaredPurpose(r *http.Request) (purpose, code string, ok bool) {
	vals := r.Header.Values(PurposeHeader)
	switch {
	case len(vals) == 0:
		return "", "", true
	case len(vals) > 1:
		return "", "", false
	}
	p := vals[0]
	if len(p) > maxPurposeBytes || !utf8.ValidString(p) {
		return "", "", false
	}
	code, ref, hasRef := strings.Cut(p, ":")
	if !isPurposeCode(code) {
		return "", "", false
	}
	if hasRef {
		// A colon needs a reference after it; IsPrint refuses control
		// and format characters (bidi overrides) and every space but
		// U+0020.
		ref = strings.Trim(ref, " ")
		if ref == "" || strings.ContainsFunc(ref, func(r rune) bool { return !unicode.IsPrint(r) }) {
			return "", "", false
		}
	}
	return p, code, true
}

// identify fills a with what c says: the token's identity, and for a
// route whose subject is the token's, the data subject.
func identify(a *Access, rt *Route, c *verify.Claims) {
	a.JTI, a.Subject, a.ClientID, a.KeyID, a.SessionID = c.JTI, c.Subject, c.ClientID, c.KeyID, c.SessionID
	if rt.SubjectParam == "" {
		a.DataSubject = c.Subject
	}
}

func hasAll(c *verify.Claims, scopes []string) bool {
	for _, s := range scopes {
		if !c.HasScope(s) {
			return false
		}
	}
	return true
}

// clientIP is the connection's peer address, without its port.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return clip(r.RemoteAddr, 64)
	}
	return host
}

// clip cuts s to at most n bytes on a rune boundary, dropping invalid UTF-8.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "")
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// limiter is a route's rate limit: a token bucket per key.
type limiter struct {
	rate    *Rate
	mu      sync.Mutex
	buckets *lru.Map[string, *rate.Limiter]
}

func (l *limiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets.Get(key)
	if !ok {
		b = rate.NewLimiter(rate.Limit(float64(l.rate.N)/l.rate.Per.Seconds()), l.rate.Burst)
		l.buckets.Put(key, b)
	}
	return b.AllowN(now, 1)
}

func rateKey(k RateKey, a *Access) string {
	switch k {
	case PerSubject:
		return a.Subject
	case PerIP:
		return a.ClientIP
	}
	return a.ClientID
}

// bufferedResponse holds an upstream's response until it may be released,
// within its own bound and the guard's bound on all responses held.
type bufferedResponse struct {
	header     http.Header
	code       int
	body       bytes.Buffer
	max        int64
	tooLarge   bool
	held       *atomic.Int64 // shared by every request
	maxHeld    int64
	reserved   int64 // this response's share of held
	overloaded bool
}

// release returns the response's share of the held bytes.
func (b *bufferedResponse) release() {
	b.held.Add(-b.reserved)
	b.reserved = 0
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	switch {
	case code >= 100 && code < 200:
		// Informational: the final status follows.
	case code < 100 || code > 999:
		b.code = http.StatusBadGateway
	case b.code == 0:
		b.code = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	if b.tooLarge || b.overloaded {
		return len(p), nil
	}
	if int64(b.body.Len()+len(p)) > b.max {
		// Drop the rest, without an error that a proxy would turn into
		// an aborted response: the guard refuses it whole.
		b.tooLarge = true
		b.body.Reset()
		b.release()
		return len(p), nil
	}
	n := int64(len(p))
	if b.held.Add(n) > b.maxHeld {
		b.held.Add(-n)
		b.overloaded = true
		b.body.Reset()
		b.release()
		return len(p), nil
	}
	b.reserved += n
	return b.body.Write(p)
}

func (b *bufferedResponse) status() int {
	if b.code == 0 {
		return http.StatusOK
	}
	return b.code
}
