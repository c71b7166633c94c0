package issuer

import (
	"errors"
	"net/http"
	"net/url"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
)

// logout ends a login session (OpenID Connect RP-Initiated Logout 1.0): the
// client presents the ID token it holds, and every token of that session —
// access, ID and refresh — is revoked. A post_logout_redirect_uri must be one
// of the client's registered redirect URIs.
func (is *Issuer) logout(w http.ResponseWriter, r *http.Request) {
	p, oe := parseForm(r)
	if oe != nil {
		is.errorPage(w, oe.Status, oe.Code, oe.Description)
		return
	}
	hint := p.get("id_token_hint")
	if hint == "" {
		is.errorPage(w, http.StatusBadRequest, "invalid_request", "id_token_hint is required to sign out")
		return
	}
	idt, err := is.checkIDToken(r, hint)
	if err != nil {
		is.errorPage(w, http.StatusBadRequest, "invalid_request", "the ID token was not issued by custos or is no longer valid")
		return
	}
	if c := p.get("client_id"); c != "" && c != idt.ClientID {
		is.errorPage(w, http.StatusBadRequest, "invalid_request", "client_id does not match the ID token")
		return
	}
	redirect := p.get("post_logout_redirect_uri")
	if redirect != "" {
		client, err := is.store.Client(r.Context(), idt.ClientID)
		if err != nil || !slices.Contains(client.RedirectURIs, redirect) {
			is.errorPage(w, http.StatusBadRequest, "invalid_request", "post_logout_redirect_uri is not registered for this application")
			return
		}
	}
	n, err := is.store.RevokeSession(r.Context(), idt.SessionID, is.cfg.Now())
	if err != nil {
		is.log.Error("ending a session", "err", err)
		is.errorPage(w, http.StatusServiceUnavailable, "temporarily_unavailable", "signing out failed; try again")
		return
	}
	is.emit(r.Context(), event.Event{Class: event.ClassAuthn, Type: "session_ended", Actor: idt.Subject, Subject: idt.Subject,
		Client: idt.ClientID, IP: clientIP(r), Fields: map[string]any{"sid": idt.SessionID, "revoked": n}})
	if redirect == "" {
		pageHeaders(w)
		w.WriteHeader(http.StatusOK)
		templates.ExecuteTemplate(w, "error.html", map[string]any{"Code": "signed_out", "Message": "You are signed out. Tokens from this sign-in no longer work."})
		return
	}
	q := url.Values{}
	if s := p.get("state"); s != "" {
		q.Set("state", s)
	}
	target := redirect
	if len(q) > 0 {
		target = withQuery(redirect, q)
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// idTokenHint is an ID token custos issued, checked.
type idTokenHint struct {
	Subject, ClientID, SessionID string
}

// checkIDToken verifies an ID token presented as a hint: signed by a key
// custody publishes, with a receipt of kind id matching it. An expired ID
// token is accepted (RP-Initiated Logout §2): it only names a session.
func (is *Issuer) checkIDToken(r *http.Request, raw string) (idTokenHint, error) {
	if len(raw) > 8<<10 {
		return idTokenHint{}, errors.New("id_token_hint too large")
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256})
	if err != nil || len(tok.Headers) != 1 {
		return idTokenHint{}, errors.New("malformed id_token_hint")
	}
	h := tok.Headers[0]
	key, err := is.custody.LookupKey(r.Context(), h.KeyID)
	if err != nil || key.Algorithm != h.Algorithm {
		return idTokenHint{}, errors.New("id_token_hint key not usable")
	}
	var c struct {
		jwt.Claims
		SessionID string `json:"sid"`
	}
	if err := tok.Claims(key.Public, &c); err != nil {
		return idTokenHint{}, err
	}
	if c.Issuer != is.cfg.Issuer || len(c.Audience) != 1 || c.ID == "" || c.SessionID == "" {
		return idTokenHint{}, errors.New("id_token_hint claims do not match")
	}
	rec, err := is.store.Receipt(r.Context(), c.ID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			is.forgedToken(r, c.Audience[0], raw, "logout")
		}
		return idTokenHint{}, errors.New("id_token_hint has no receipt")
	}
	if rec.Kind != store.ReceiptID || rec.Subject != c.Subject || rec.ClientID != c.Audience[0] || rec.KeyID != h.KeyID || rec.SessionID != c.SessionID {
		is.forgedToken(r, c.Audience[0], raw, "logout")
		return idTokenHint{}, errors.New("id_token_hint does not match its receipt")
	}
	return idTokenHint{Subject: c.Subject, ClientID: rec.ClientID, SessionID: rec.SessionID}, nil
}
