package issuer

import (
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custos-dev/custos/internal/accounts"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

var templates = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// Cookie names. On https issuers the __Host- prefix pins them to this origin.
const (
	cookieLogin  = "custos_login"
	cookieDevice = "custos_device"
)

// authParams are the authorization request parameters carried from the
// login page's GET to its POST, in a fixed order so the CSRF token can bind
// to them.
var authParams = []string{"client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method", "resource"}

// authRequest is a validated authorization request.
type authRequest struct {
	client      store.Client
	redirectURI string
	scope       []string
	state       string
	nonce       string
	challenge   string
	audience    string
	params      params
}

// authError is a failed authorization request: shown on an error page when
// the client or redirect URI can't be trusted, otherwise sent back to the
// client's redirect URI (RFC 6749 §4.1.2.1).
type authError struct {
	code, desc string
	redirect   bool
}

// validateAuth checks an authorization request. Nothing is stored.
func (is *Issuer) validateAuth(r *http.Request, p params) (*authRequest, *authError) {
	for _, k := range []string{"request", "request_uri"} {
		if p.get(k) != "" {
			return nil, &authError{"request_not_supported", "request objects are not supported", false}
		}
	}
	clientID := p.get("client_id")
	if clientID == "" || len(clientID) > 128 {
		return nil, &authError{"invalid_request", "client_id is missing or malformed", false}
	}
	client, err := is.store.Client(r.Context(), clientID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &authError{"invalid_client", "this application is not registered", false}
	}
	if err != nil {
		is.log.Error("loading client", "client", clientID, "err", err)
		return nil, &authError{"temporarily_unavailable", "try again shortly", false}
	}
	redirect := p.get("redirect_uri")
	if redirect == "" || !slices.Contains(client.RedirectURIs, redirect) {
		// Never redirect to an unregistered URI: that is an open redirect.
		return nil, &authError{"invalid_request", "redirect_uri is missing or not registered for this application", false}
	}
	req := &authRequest{client: client, redirectURI: redirect, state: p.get("state"), nonce: p.get("nonce"), params: p}
	fail := func(code, desc string) (*authRequest, *authError) { return req, &authError{code, desc, true} }

	if len(req.state) > 512 || len(req.nonce) > 512 {
		return fail("invalid_request", "state and nonce must be at most 512 bytes")
	}
	if rt := p.get("response_type"); rt != "code" {
		return fail("unsupported_response_type", "only response_type=code is supported")
	}
	if !slices.Contains(client.GrantTypes, "authorization_code") {
		return fail("unauthorized_client", "this application may not use the authorization code flow")
	}
	if p.get("code_challenge_method") != "S256" {
		return fail("invalid_request", "PKCE with code_challenge_method=S256 is required")
	}
	req.challenge = p.get("code_challenge")
	if !validChallenge(req.challenge) {
		return fail("invalid_request", "code_challenge must be a base64url SHA-256 digest")
	}
	scope, oe := grantableScope(client, p.get("scope"))
	if oe != nil {
		return fail(oe.Code, oe.Description)
	}
	req.scope = scope
	if req.audience, oe = audienceFor(client, p.get("resource")); oe != nil {
		return fail(oe.Code, oe.Description)
	}
	switch p.get("prompt") {
	case "", "login", "consent":
	case "none":
		// custos keeps no single-sign-on session: a customer always signs in.
		return fail("login_required", "the customer must sign in")
	default:
		return fail("invalid_request", "unsupported prompt value")
	}
	return req, nil
}

// validChallenge reports whether s is 43 base64url characters (32 bytes).
func validChallenge(s string) bool {
	if len(s) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil
}

// grantableScope parses a requested scope and checks it against the client's
// registration. A client registered without scopes may ask for the standard
// OpenID Connect ones.
func grantableScope(c store.Client, requested string) ([]string, *oauthError) {
	allowed := c.Scopes
	if len(allowed) == 0 {
		allowed = standardScopes
	}
	var out []string
	for s := range strings.FieldsSeq(requested) {
		if len(s) > 128 || strings.ContainsAny(s, "\"\\") {
			return nil, errInvalidScope("malformed scope")
		}
		if !slices.Contains(allowed, s) {
			return nil, errInvalidScope("scope " + strconv.Quote(s) + " is not allowed for this client")
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// audienceFor picks the access token audience: the RFC 8707 resource the
// client asked for, which must be registered, or the client's default.
func audienceFor(c store.Client, resource string) (string, *oauthError) {
	if resource == "" {
		if len(c.Audiences) > 0 {
			return c.Audiences[0], nil
		}
		return DefaultAudience, nil
	}
	if slices.Contains(c.Audiences, resource) || (len(c.Audiences) == 0 && resource == DefaultAudience) {
		return resource, nil
	}
	return "", errInvalidTarget("resource is not registered for this client")
}

func (is *Issuer) authorize(w http.ResponseWriter, r *http.Request) {
	p, oe := parseForm(r)
	if oe != nil {
		is.errorPage(w, http.StatusBadRequest, oe.Code, oe.Description)
		return
	}
	req, ae := is.validateAuth(r, p)
	if ae != nil {
		is.authFailed(w, r, req, ae)
		return
	}
	nonce := newSecret()
	http.SetCookie(w, is.cookie(cookieLogin, nonce, 30*time.Minute))
	is.loginPage(w, http.StatusOK, req, nonce, "", "")
}

// login handles the login form's POST.
func (is *Issuer) login(w http.ResponseWriter, r *http.Request) {
	p, oe := parseForm(r)
	if oe != nil {
		is.errorPage(w, oe.Status, oe.Code, oe.Description)
		return
	}
	if !is.sameOrigin(r) {
		is.errorPage(w, http.StatusForbidden, "invalid_request", "the sign-in form was posted from another site")
		return
	}
	req, ae := is.validateAuth(r, p)
	if ae != nil {
		is.authFailed(w, r, req, ae)
		return
	}
	c, err := r.Cookie(is.cookieName(cookieLogin))
	if err != nil || !hmac.Equal([]byte(p.get("csrf")), []byte(is.csrfToken(c.Value, p))) {
		is.errorPage(w, http.StatusForbidden, "invalid_request", "this sign-in page has expired; go back to the application and start again")
		return
	}
	loginID, password := p.get("login_id"), p.get("password")
	src := accounts.Source{IP: clientIP(r), UserAgent: r.UserAgent()}
	if dc, err := r.Cookie(is.cookieName(cookieDevice)); err == nil {
		src.DeviceToken = dc.Value
	}
	acc, err := is.accounts.Authenticate(r.Context(), loginID, password, src)
	if err != nil {
		status, msg := http.StatusUnauthorized, "The login ID or password is incorrect."
		if te, ok := errors.AsType[*accounts.ThrottledError](err); ok {
			status = http.StatusTooManyRequests
			secs := int(te.RetryAfter.Round(time.Second).Seconds())
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			msg = "Too many attempts. Wait " + (time.Duration(max(secs, 1)) * time.Second).String() + " and try again."
		} else if !errors.Is(err, accounts.ErrInvalidCredentials) {
			if _, input := errors.AsType[*accounts.InputError](err); !input {
				is.log.Error("authenticating", "err", err)
				status, msg = http.StatusServiceUnavailable, "Sign-in is unavailable right now. Try again shortly."
			}
		}
		is.loginPage(w, status, req, c.Value, loginID, msg)
		return
	}

	now := is.cfg.Now()
	code := newSecret()
	sid := newID()
	err = is.store.InsertAuthCode(r.Context(), store.AuthCode{
		Hash: secretHash(code), ClientID: req.client.ID, RedirectURI: req.redirectURI, Subject: acc.ID, SessionID: sid,
		Scope: strings.Join(req.scope, " "), Nonce: req.nonce, CodeChallenge: req.challenge, Audience: req.audience,
		AuthTime: now, ExpiresAt: now.Add(is.cfg.CodeTTL),
	})
	if err != nil {
		is.log.Error("storing authorization code", "err", err)
		is.loginPage(w, http.StatusServiceUnavailable, req, c.Value, loginID, "Sign-in is unavailable right now. Try again shortly.")
		return
	}
	is.emit(r.Context(), event.Event{Class: event.ClassAuthn, Type: "session_started", Actor: acc.ID, Subject: acc.ID,
		Client: req.client.ID, IP: src.IP, Fields: map[string]any{"sid": sid}})

	http.SetCookie(w, is.cookie(cookieLogin, "", -1))
	http.SetCookie(w, is.cookie(cookieDevice, is.accounts.IssueDeviceToken(acc.ID), 180*24*time.Hour))
	q := url.Values{"code": {code}, "iss": {is.cfg.Issuer}}
	if req.state != "" {
		q.Set("state", req.state)
	}
	http.Redirect(w, r, withQuery(req.redirectURI, q), http.StatusSeeOther)
}

// authFailed reports a failed authorization request.
func (is *Issuer) authFailed(w http.ResponseWriter, r *http.Request, req *authRequest, ae *authError) {
	if !ae.redirect || req == nil {
		status := http.StatusBadRequest
		if ae.code == "temporarily_unavailable" {
			status = http.StatusServiceUnavailable
		}
		is.errorPage(w, status, ae.code, ae.desc)
		return
	}
	q := url.Values{"error": {ae.code}, "error_description": {ae.desc}, "iss": {is.cfg.Issuer}}
	if req.state != "" {
		q.Set("state", req.state)
	}
	http.Redirect(w, r, withQuery(req.redirectURI, q), http.StatusSeeOther)
}

func withQuery(uri string, q url.Values) string {
	sep := "?"
	if strings.Contains(uri, "?") {
		sep = "&"
	}
	return uri + sep + q.Encode()
}

// csrfToken binds the login form to the browser's login cookie and to the
// exact authorization request shown.
func (is *Issuer) csrfToken(cookie string, p params) string {
	m := hmac.New(sha256.New, is.csrfKey[:])
	m.Write([]byte(cookie))
	for _, k := range authParams {
		m.Write([]byte{0})
		m.Write([]byte(k))
		m.Write([]byte{0})
		m.Write([]byte(p.get(k)))
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// sameOrigin refuses cross-site form posts. Browsers send Origin on POST;
// its absence (an old browser, or a non-browser client) is allowed because
// the CSRF token still has to match.
func (is *Issuer) sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(is.cfg.Issuer)
	return err == nil && o == u.Scheme+"://"+u.Host
}

func (is *Issuer) secure() bool { return strings.HasPrefix(is.cfg.Issuer, "https://") }

func (is *Issuer) cookieName(name string) string {
	if is.secure() {
		return "__Host-" + name
	}
	return name
}

func (is *Issuer) cookie(name, value string, maxAge time.Duration) *http.Cookie {
	c := &http.Cookie{Name: is.cookieName(name), Value: value, Path: "/", HttpOnly: true,
		Secure: is.secure(), SameSite: http.SameSiteLaxMode, MaxAge: int(maxAge.Seconds())}
	if maxAge < 0 {
		c.MaxAge = -1
	}
	return c
}

type hiddenField struct{ Name, Value string }

func (is *Issuer) loginPage(w http.ResponseWriter, status int, req *authRequest, cookie, loginID, msg string) {
	var hidden []hiddenField
	for _, k := range authParams {
		if v := req.params.get(k); v != "" {
			hidden = append(hidden, hiddenField{k, v})
		}
	}
	hidden = append(hidden, hiddenField{"csrf", is.csrfToken(cookie, req.params)})
	pageHeaders(w)
	w.WriteHeader(status)
	templates.ExecuteTemplate(w, "login.html", map[string]any{
		"ClientName": req.client.Name, "Action": PathAuthorize, "Hidden": hidden, "LoginID": loginID, "Error": msg,
	})
}

func (is *Issuer) errorPage(w http.ResponseWriter, status int, code, msg string) {
	pageHeaders(w)
	w.WriteHeader(status)
	templates.ExecuteTemplate(w, "error.html", map[string]any{"Code": code, "Message": msg})
}

// pageHeaders are set on every HTML page: no caching, no framing, no
// scripts, no referrer.
func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
}
