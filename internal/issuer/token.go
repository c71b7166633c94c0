package issuer

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
)

// tokenResponse is RFC 6749 §5.1 plus the OpenID Connect id_token.
type tokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type,omitempty"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int    `json:"expires_in"`
	RefreshToken    string `json:"refresh_token,omitempty"`
	IDToken         string `json:"id_token,omitempty"`
	Scope           string `json:"scope,omitempty"`
}

func (is *Issuer) token(w http.ResponseWriter, r *http.Request) {
	p, oe := parseForm(r)
	if oe != nil {
		writeOAuthError(w, oe)
		return
	}
	client, oe := is.authenticateClient(r, p)
	if oe != nil {
		writeOAuthError(w, oe)
		return
	}
	grant := p.get("grant_type")
	if !slices.Contains(client.GrantTypes, grant) && slices.Contains([]string{"authorization_code", "refresh_token", "client_credentials"}, grant) {
		writeOAuthError(w, errUnauthorizedClient("this client may not use grant_type "+grant))
		return
	}
	var resp *tokenResponse
	switch grant {
	case "authorization_code":
		resp, oe = is.codeGrant(r, p, client)
	case "refresh_token":
		resp, oe = is.refreshGrant(r, p, client)
	case "client_credentials":
		resp, oe = is.clientCredentialsGrant(r, p, client)
	case "":
		oe = errInvalidRequest("grant_type is required")
	default:
		oe = &oauthError{http.StatusBadRequest, "unsupported_grant_type", "supported grant types: authorization_code, refresh_token, client_credentials"}
	}
	if oe != nil {
		writeOAuthError(w, oe)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// authenticateClient identifies the client of a token, introspection or
// revocation request: HTTP Basic or form secret for confidential clients,
// client_id alone for public ones. Exactly one method may be used.
func (is *Issuer) authenticateClient(r *http.Request, p params) (store.Client, *oauthError) {
	id, secret, basic := r.BasicAuth()
	if !basic && r.Header.Get("Authorization") != "" {
		return store.Client{}, errInvalidClient("malformed Authorization header: use HTTP Basic")
	}
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id) // RFC 6749 §2.3.1
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return store.Client{}, errInvalidClient("malformed client credentials")
		}
		if p.get("client_secret") != "" || (p.get("client_id") != "" && p.get("client_id") != id) {
			return store.Client{}, errInvalidRequest("use one client authentication method")
		}
	} else {
		id, secret = p.get("client_id"), p.get("client_secret")
	}
	if id == "" || len(id) > 128 {
		return store.Client{}, errInvalidClient("client authentication is required")
	}
	client, err := is.store.Client(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		is.clientAuthFailed(r, id, "unknown_client")
		return store.Client{}, errInvalidClient("client authentication failed")
	}
	if err != nil {
		is.log.Error("loading client", "err", err)
		return store.Client{}, errUnavailable
	}
	switch client.Kind {
	case store.ClientPublic:
		if secret != "" {
			is.clientAuthFailed(r, id, "secret_for_public_client")
			return store.Client{}, errInvalidClient("client authentication failed")
		}
	default:
		sum := sha256.Sum256([]byte(secret))
		if secret == "" || subtle.ConstantTimeCompare(sum[:], client.SecretHash) != 1 {
			is.clientAuthFailed(r, id, "bad_secret")
			return store.Client{}, errInvalidClient("client authentication failed")
		}
	}
	return client, nil
}

func (is *Issuer) clientAuthFailed(r *http.Request, clientID, reason string) {
	is.emit(r.Context(), event.Event{Class: event.ClassAuthn, Type: "client_auth_failed", Actor: clientID,
		Client: clientID, IP: clientIP(r), Fields: map[string]any{"reason": reason}})
}

// mintRequest is what a grant asks mint to issue.
type mintRequest struct {
	client    store.Client
	subject   string
	account   *store.Account // nil for client credentials
	sessionID string
	scope     []string
	audience  string
	nonce     string
	authTime  time.Time
	grant     string
	ip        string
	familyID  string
	refresh   bool      // issue a refresh token
	refreshTo time.Time // its expiry
}

// mint signs the tokens a grant returns and prepares their receipts. Nothing
// may be returned to the client until the receipts are stored.
func (is *Issuer) mint(ctx context.Context, m mintRequest) (*tokenResponse, store.Grant, map[string]any, error) {
	sk, err := is.signer(ctx)
	if err != nil {
		return nil, store.Grant{}, nil, err
	}
	now := is.cfg.Now()
	exp := now.Add(is.cfg.AccessTokenTTL)
	receipt := func(jti string, kind store.ReceiptKind, kid string, exp time.Time) store.Receipt {
		return store.Receipt{JTI: jti, Kind: kind, Subject: m.subject, ClientID: m.client.ID, KeyID: kid,
			IssuedAt: now.Truncate(time.Second), ExpiresAt: exp.Truncate(time.Second), SessionID: m.sessionID,
			Grant: m.grant, ClientIP: m.ip, FamilyID: m.familyID}
	}
	scope := strings.Join(m.scope, " ")
	at := accessClaims{
		Issuer: is.cfg.Issuer, Subject: m.subject, Audience: m.audience, ExpiresAt: unixTime(exp), IssuedAt: unixTime(now),
		JTI: newID(), ClientID: m.client.ID, Scope: scope, SessionID: m.sessionID,
	}
	if !m.authTime.IsZero() {
		at.AuthTime = unixTime(m.authTime)
	}
	access, err := signJWT(sk, typAccess, at)
	if err != nil {
		return nil, store.Grant{}, nil, err
	}
	resp := &tokenResponse{AccessToken: access, TokenType: "Bearer", ExpiresIn: int(is.cfg.AccessTokenTTL.Seconds()), Scope: scope}
	g := store.Grant{Receipts: []store.Receipt{receipt(at.JTI, store.ReceiptAccess, sk.ID, exp)}}
	fields := map[string]any{"grant": m.grant, "kid": sk.ID, "access_jti": at.JTI, "exp": at.ExpiresAt, "audience": m.audience}
	if m.sessionID != "" {
		fields["sid"] = m.sessionID
	}
	if m.familyID != "" {
		fields["family"] = m.familyID
	}

	if m.account != nil && slices.Contains(m.scope, "openid") {
		idExp := now.Add(is.cfg.IDTokenTTL)
		id := idClaims{
			Issuer: is.cfg.Issuer, Subject: m.subject, Audience: m.client.ID, ExpiresAt: unixTime(idExp), IssuedAt: unixTime(now),
			JTI: newID(), AuthTime: at.AuthTime, Nonce: m.nonce, SessionID: m.sessionID,
			AccessTokenHash: tokenHash(sk.Algorithm, access), userClaims: profileClaims(*m.account, m.scope),
		}
		if resp.IDToken, err = signJWT(sk, typID, id); err != nil {
			return nil, store.Grant{}, nil, err
		}
		g.Receipts = append(g.Receipts, receipt(id.JTI, store.ReceiptID, sk.ID, idExp))
		fields["id_jti"] = id.JTI
	}
	if m.refresh {
		secret := newSecret()
		rt := &store.RefreshToken{
			Hash: secretHash(secret), JTI: newID(), FamilyID: m.familyID, ClientID: m.client.ID, Subject: m.subject,
			SessionID: m.sessionID, Scope: scope, Audience: m.audience, AuthTime: m.authTime, IssuedAt: now, ExpiresAt: m.refreshTo,
			Grant: m.grant, ClientIP: m.ip,
		}
		// The refresh token's row is its receipt: it is looked up by the
		// token's hash, never by a jti.
		resp.RefreshToken, g.Refresh = secret, rt
		fields["refresh_jti"] = rt.JTI
	}
	return resp, g, fields, nil
}

// EventEncoder is an event sink that can also encode an event as a log
// entry for the store to append in the same transaction as a grant. The
// audit log is one; with it, a token_issued event is durable exactly when
// the grant is.
type EventEncoder interface {
	Encode(e event.Event) ([]byte, error)
}

func issuedEvent(m mintRequest, fields map[string]any) event.Event {
	return event.Event{Class: event.ClassToken, Type: "token_issued", Actor: m.client.ID, Subject: m.subject,
		Client: m.client.ID, IP: m.ip, Fields: fields}
}

// recordWith puts the token_issued event into the grant when the event
// sink can encode it, and reports whether it did.
func (is *Issuer) recordWith(g *store.Grant, m mintRequest, fields map[string]any) bool {
	enc, ok := is.events.(EventEncoder)
	if !ok {
		return false
	}
	e := issuedEvent(m, fields)
	e.Time = is.cfg.Now()
	b, err := enc.Encode(e)
	if err != nil {
		is.log.Error("encoding event", "type", e.Type, "err", err)
		return false
	}
	g.Events = append(g.Events, b)
	return true
}

// issued records the token_issued event once the grant is durable, for
// sinks that cannot join the grant's transaction.
func (is *Issuer) issued(ctx context.Context, m mintRequest, fields map[string]any) {
	is.emit(ctx, issuedEvent(m, fields))
}

func (is *Issuer) codeGrant(r *http.Request, p params, client store.Client) (*tokenResponse, *oauthError) {
	ctx := r.Context()
	code := p.get("code")
	if code == "" {
		return nil, errInvalidRequest("code is required")
	}
	hash := secretHash(code)
	ac, err := is.store.AuthCode(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errInvalidGrant("the authorization code is invalid or expired")
	}
	if err != nil {
		is.log.Error("loading authorization code", "err", err)
		return nil, errUnavailable
	}
	now := is.cfg.Now()
	if ac.ClientID != client.ID {
		return nil, errInvalidGrant("the authorization code was issued to another client")
	}
	if !ac.UsedAt.IsZero() {
		is.codeReplayed(r, ac)
		return nil, errInvalidGrant("the authorization code was already used")
	}
	if !now.Before(ac.ExpiresAt) {
		return nil, errInvalidGrant("the authorization code is invalid or expired")
	}
	if p.get("redirect_uri") != ac.RedirectURI {
		return nil, errInvalidGrant("redirect_uri does not match the authorization request")
	}
	if !pkceMatches(p.get("code_verifier"), ac.CodeChallenge) {
		return nil, errInvalidGrant("code_verifier does not match the code challenge")
	}
	acc, oe := is.activeAccount(ctx, ac.Subject)
	if oe != nil {
		return nil, oe
	}
	m := mintRequest{
		client: client, subject: ac.Subject, account: &acc, sessionID: ac.SessionID, scope: strings.Fields(ac.Scope),
		audience: ac.Audience, nonce: ac.Nonce, authTime: ac.AuthTime, grant: "authorization_code", ip: clientIP(r),
		familyID: newID(), refresh: slices.Contains(client.GrantTypes, "refresh_token"),
		refreshTo: ac.AuthTime.Add(is.cfg.RefreshTokenTTL),
	}
	resp, g, fields, err := is.mint(ctx, m)
	if err != nil {
		return nil, errUnavailable
	}
	logged := is.recordWith(&g, m, fields)
	switch err := is.store.RedeemAuthCode(ctx, hash, now, m.familyID, g); {
	case errors.Is(err, store.ErrReused):
		if ac, err := is.store.AuthCode(ctx, hash); err == nil {
			is.codeReplayed(r, ac)
		}
		return nil, errInvalidGrant("the authorization code was already used")
	case errors.Is(err, store.ErrNotFound):
		return nil, errInvalidGrant("the authorization code is invalid or expired")
	case err != nil:
		is.log.Error("redeeming authorization code", "err", err)
		return nil, errUnavailable
	}
	if !logged {
		is.issued(ctx, m, fields)
	}
	return resp, nil
}

// codeReplayed revokes everything issued from a code presented twice
// (RFC 6749 §4.1.2): the first redemption may have been an attacker's.
func (is *Issuer) codeReplayed(r *http.Request, ac store.AuthCode) {
	n, err := is.store.RevokeFamily(r.Context(), ac.FamilyID, is.cfg.Now())
	if err != nil {
		is.log.Error("revoking tokens of a replayed code", "err", err)
	}
	is.emit(r.Context(), event.Event{Class: event.ClassToken, Type: "code_replayed", Actor: ac.ClientID, Subject: ac.Subject,
		Client: ac.ClientID, IP: clientIP(r), Fields: withSID(map[string]any{"family": ac.FamilyID, "revoked": n}, ac.SessionID)})
}

// pkceMatches checks an RFC 7636 S256 code verifier against its challenge.
func pkceMatches(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	for _, c := range verifier {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("-._~", c)) {
			return false
		}
	}
	sum := sha256.Sum256([]byte(verifier))
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(want), []byte(challenge)) == 1
}

// activeAccount loads a subject's account and refuses disabled ones.
func (is *Issuer) activeAccount(ctx context.Context, id string) (store.Account, *oauthError) {
	acc, err := is.accounts.Account(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return acc, errInvalidGrant("the account no longer exists")
	}
	if err != nil {
		is.log.Error("loading account", "err", err)
		return acc, errUnavailable
	}
	if acc.Disabled() {
		return acc, errInvalidGrant("the account is disabled")
	}
	return acc, nil
}

func (is *Issuer) refreshGrant(r *http.Request, p params, client store.Client) (*tokenResponse, *oauthError) {
	ctx := r.Context()
	secret := p.get("refresh_token")
	if secret == "" {
		return nil, errInvalidRequest("refresh_token is required")
	}
	hash := secretHash(secret)
	old, err := is.store.RefreshToken(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errInvalidGrant("the refresh token is invalid or expired")
	}
	if err != nil {
		is.log.Error("loading refresh token", "err", err)
		return nil, errUnavailable
	}
	now := is.cfg.Now()
	if old.ClientID != client.ID {
		return nil, errInvalidGrant("the refresh token was issued to another client")
	}
	if !old.SpentAt.IsZero() && old.RevokedAt.IsZero() {
		is.refreshReused(r, old)
		return nil, errInvalidGrant("the refresh token was already used")
	}
	if !old.RevokedAt.IsZero() || !now.Before(old.ExpiresAt) {
		return nil, errInvalidGrant("the refresh token is invalid or expired")
	}
	scope := strings.Fields(old.Scope)
	if s := p.get("scope"); s != "" {
		narrowed := strings.Fields(s)
		for _, x := range narrowed {
			if !slices.Contains(scope, x) {
				return nil, errInvalidScope("a refresh may only narrow the original scope")
			}
		}
		scope = narrowed
	}
	acc, oe := is.activeAccount(ctx, old.Subject)
	if oe != nil {
		return nil, oe
	}
	m := mintRequest{
		client: client, subject: old.Subject, account: &acc, sessionID: old.SessionID, scope: scope, audience: old.Audience,
		authTime: old.AuthTime, grant: "refresh_token", ip: clientIP(r), familyID: old.FamilyID, refresh: true,
		refreshTo: old.ExpiresAt,
	}
	resp, g, fields, err := is.mint(ctx, m)
	if err != nil {
		return nil, errUnavailable
	}
	fields["previous_refresh_jti"] = old.JTI
	logged := is.recordWith(&g, m, fields)
	switch err := is.store.RotateRefresh(ctx, hash, now, g); {
	case errors.Is(err, store.ErrReused):
		is.refreshReused(r, old)
		return nil, errInvalidGrant("the refresh token was already used")
	case errors.Is(err, store.ErrNotFound):
		return nil, errInvalidGrant("the refresh token is invalid or expired")
	case err != nil:
		is.log.Error("rotating refresh token", "err", err)
		return nil, errUnavailable
	}
	if !logged {
		is.issued(ctx, m, fields)
	}
	return resp, nil
}

// withSID adds the session the revoked family belonged to, when it has
// one: whoever is told of the revocation (Shared Signals) can end that
// session rather than all of the customer's.
func withSID(fields map[string]any, sid string) map[string]any {
	if sid != "" {
		fields["sid"] = sid
	}
	return fields
}

// refreshReused revokes a whole family when a spent refresh token comes
// back: either the client or a thief holds a copy (OAuth 2.1 §4.3.1).
func (is *Issuer) refreshReused(r *http.Request, old store.RefreshToken) {
	n, err := is.store.RevokeFamily(r.Context(), old.FamilyID, is.cfg.Now())
	if err != nil {
		is.log.Error("revoking a reused refresh token's family", "err", err)
	}
	is.emit(r.Context(), event.Event{Class: event.ClassToken, Type: "refresh_reused", Actor: old.ClientID, Subject: old.Subject,
		Client: old.ClientID, IP: clientIP(r), Fields: withSID(map[string]any{"family": old.FamilyID, "refresh_jti": old.JTI, "revoked": n}, old.SessionID)})
}

func (is *Issuer) clientCredentialsGrant(r *http.Request, p params, client store.Client) (*tokenResponse, *oauthError) {
	if client.Kind != store.ClientConfidential {
		return nil, errUnauthorizedClient("public clients cannot use client credentials")
	}
	var scope []string
	for s := range strings.FieldsSeq(p.get("scope")) {
		if !slices.Contains(client.Scopes, s) || slices.Contains(standardScopes, s) {
			return nil, errInvalidScope("scope is not allowed for this client")
		}
		if !slices.Contains(scope, s) {
			scope = append(scope, s)
		}
	}
	aud, oe := audienceFor(client, p.get("resource"))
	if oe != nil {
		return nil, oe
	}
	m := mintRequest{client: client, subject: client.ID, scope: scope, audience: aud, grant: "client_credentials", ip: clientIP(r)}
	resp, g, fields, err := is.mint(r.Context(), m)
	if err != nil {
		return nil, errUnavailable
	}
	logged := is.recordWith(&g, m, fields)
	if err := is.store.InsertGrant(r.Context(), g); err != nil {
		is.log.Error("recording receipts", "err", err)
		return nil, errUnavailable
	}
	if !logged {
		is.issued(r.Context(), m, fields)
	}
	return resp, nil
}

// profileClaims returns the claims the granted scopes release.
func profileClaims(a store.Account, scope []string) userClaims {
	var u userClaims
	if slices.Contains(scope, "profile") {
		u.Name = a.Name
	}
	isPhone := strings.HasPrefix(a.LoginID, "+")
	if slices.Contains(scope, "email") && !isPhone {
		u.Email = a.LoginID
		f := false // custos does not verify e-mail addresses yet
		u.EmailVerified = &f
	}
	if slices.Contains(scope, "phone") && isPhone {
		u.Phone = a.LoginID
	}
	return u
}
