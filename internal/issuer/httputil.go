package issuer

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// oauthError is an RFC 6749 §5.2 error response. Description is shown to
// the client, so it never carries internal detail.
type oauthError struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func errInvalidRequest(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_request", desc}
}
func errInvalidClient(desc string) *oauthError {
	return &oauthError{http.StatusUnauthorized, "invalid_client", desc}
}
func errInvalidGrant(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_grant", desc}
}
func errUnauthorizedClient(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "unauthorized_client", desc}
}
func errInvalidScope(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_scope", desc}
}
func errInvalidTarget(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_target", desc}
}

var errUnavailable = &oauthError{http.StatusServiceUnavailable, "temporarily_unavailable", "try again shortly"}

// writeJSON writes v with the headers every token-bearing response needs.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeOAuthError(w http.ResponseWriter, err *oauthError) {
	if err.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="custos"`)
	}
	writeJSON(w, err.Status, err)
}

// limitBody caps every request body at MaxBodyBytes.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxBodyBytes {
			writeOAuthError(w, &oauthError{http.StatusRequestEntityTooLarge, "invalid_request", "request body too large"})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

// params holds a request's parameters, each given at most once (RFC 6749
// §3.1, §3.2) and valid UTF-8.
type params url.Values

// parseForm reads the parameters of a POST with a form body, or of the
// query for GET. Repeated parameters, invalid UTF-8, a wrong content type
// and oversized bodies are refused.
func parseForm(r *http.Request) (params, *oauthError) {
	if r.Method == http.MethodPost {
		ct := r.Header.Get("Content-Type")
		if i := strings.IndexByte(ct, ';'); i >= 0 {
			ct = ct[:i]
		}
		if !strings.EqualFold(strings.TrimSpace(ct), "application/x-www-form-urlencoded") {
			return nil, errInvalidRequest("content type must be application/x-www-form-urlencoded")
		}
	}
	if err := r.ParseForm(); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, &oauthError{http.StatusRequestEntityTooLarge, "invalid_request", "request body too large"}
		}
		return nil, errInvalidRequest("malformed parameters")
	}
	vals := r.Form
	if r.Method == http.MethodPost {
		vals = r.PostForm
		// Parameters in the query string of a POST are ignored, except
		// that they must not contradict the body.
		for k := range r.URL.Query() {
			if _, dup := r.PostForm[k]; dup {
				return nil, errInvalidRequest("parameter " + safeName(k) + " given twice")
			}
		}
	}
	for k, v := range vals {
		if !utf8.ValidString(k) {
			return nil, errInvalidRequest("parameter names must be UTF-8")
		}
		if len(v) > 1 {
			return nil, errInvalidRequest("parameter " + safeName(k) + " given more than once")
		}
		if !utf8.ValidString(v[0]) || strings.ContainsRune(v[0], 0) {
			return nil, errInvalidRequest("parameter " + safeName(k) + " is not valid UTF-8 text")
		}
	}
	return params(vals), nil
}

func (p params) get(k string) string { return url.Values(p).Get(k) }

// safeName returns a parameter name fit to echo in an error.
func safeName(k string) string {
	if len(k) > 40 || !utf8.ValidString(k) {
		return "(invalid name)"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, k)
}

// clientIP is the remote address of the connection. custos does not trust
// X-Forwarded-For by default.
func clientIP(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}

// writeJSONCached writes a public document; the caller sets Cache-Control.
func writeJSONCached(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
