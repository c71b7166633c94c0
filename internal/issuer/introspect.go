package issuer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/verify"
)

// introspection is an RFC 7662 response.
type introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Iat       int64  `json:"iat,omitempty"`
	Sub       string `json:"sub,omitempty"`
	Aud       any    `json:"aud,omitempty"`
	Iss       string `json:"iss,omitempty"`
	JTI       string `json:"jti,omitempty"`
	SID       string `json:"sid,omitempty"`
}

var inactive = introspection{Active: false}

func (is *Issuer) introspect(w http.ResponseWriter, r *http.Request) {
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
	if client.Kind != store.ClientConfidential {
		writeOAuthError(w, errUnauthorizedClient("only confidential clients may introspect tokens"))
		return
	}
	tok := p.get("token")
	if tok == "" {
		writeOAuthError(w, errInvalidRequest("token is required"))
		return
	}
	if looksLikeJWT(tok) {
		writeJSON(w, http.StatusOK, is.introspectJWT(r, client, tok))
		return
	}
	writeJSON(w, http.StatusOK, is.introspectRefresh(r.Context(), tok))
}

func looksLikeJWT(tok string) bool { return strings.Count(tok, ".") == 2 }

func (is *Issuer) introspectJWT(r *http.Request, caller store.Client, tok string) introspection {
	c, err := is.verifier.Verify(r.Context(), tok)
	if err != nil {
		reason := verify.ReasonOf(err)
		if reason == verify.ReasonForged {
			is.forgedToken(r, caller.ID, tok, "introspection")
		}
		if reason == verify.ReasonUnavailable {
			is.log.Error("introspection could not check a token", "err", err)
		}
		return inactive
	}
	return introspection{
		Active: true, Scope: strings.Join(c.Scope, " "), ClientID: c.ClientID, TokenType: "Bearer",
		Exp: c.ExpiresAt.Unix(), Iat: c.IssuedAt.Unix(), Sub: c.Subject, Aud: c.Audience, Iss: c.Issuer, JTI: c.JTI, SID: c.SessionID,
	}
}

func (is *Issuer) introspectRefresh(ctx context.Context, tok string) introspection {
	rt, err := is.store.RefreshToken(ctx, secretHash(tok))
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			is.log.Error("introspecting a refresh token", "err", err)
		}
		return inactive
	}
	if !rt.SpentAt.IsZero() || !rt.RevokedAt.IsZero() || !is.cfg.Now().Before(rt.ExpiresAt) {
		return inactive
	}
	if acc, err := is.accounts.Account(ctx, rt.Subject); err != nil || acc.Disabled() {
		return inactive
	}
	return introspection{
		Active: true, Scope: rt.Scope, ClientID: rt.ClientID, TokenType: "refresh_token", Exp: rt.ExpiresAt.Unix(),
		Iat: rt.IssuedAt.Unix(), Sub: rt.Subject, Iss: is.cfg.Issuer, JTI: rt.JTI, SID: rt.SessionID,
	}
}

// RecordForged records a well-signed token custos never issued that was
// presented at where (another of the node's endpoints, such as its admin
// API), as the issuer's own endpoints do.
func (is *Issuer) RecordForged(r *http.Request, presenter, tok, where string) {
	is.forgedToken(r, presenter, tok, where)
}

// forgedToken records a well-signed token custos never issued. The event
// carries the token's header and claims as the forger wrote them — never the
// token itself, which would let anyone who reads the log replay it.
func (is *Issuer) forgedToken(r *http.Request, presenter, tok, where string) {
	fields := untrustedClaims(tok)
	fields["where"] = where
	fields["presented_by"] = presenter
	sub, _ := fields["sub"].(string)
	client, _ := fields["client_id"].(string)
	is.emit(r.Context(), event.Event{Class: event.ClassToken, Type: "forged_token", Actor: presenter, Subject: sub,
		Client: client, IP: clientIP(r), Fields: fields})
}

// untrustedClaims decodes the identifying header and claim fields of a
// token already known to be well signed, for the record. Values are
// truncated; nothing else is kept.
func untrustedClaims(tok string) map[string]any {
	out := map[string]any{}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return out
	}
	decode := func(seg string, keys ...string) {
		b, err := base64.RawURLEncoding.DecodeString(seg)
		if err != nil {
			return
		}
		var m map[string]any
		if json.Unmarshal(b, &m) != nil {
			return
		}
		for _, k := range keys {
			switch v := m[k].(type) {
			case string:
				out[k] = truncate(v, 256)
			case float64:
				out[k] = int64(v)
			case []any:
				if len(v) > 0 {
					if s, ok := v[0].(string); ok {
						out[k] = truncate(s, 256)
					}
				}
			}
		}
	}
	decode(parts[0], "kid", "alg", "typ")
	decode(parts[1], "iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "sid")
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func (is *Issuer) revoke(w http.ResponseWriter, r *http.Request) {
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
	tok := p.get("token")
	if tok == "" {
		writeOAuthError(w, errInvalidRequest("token is required"))
		return
	}
	ctx := r.Context()
	now := is.cfg.Now()
	// RFC 7009 §2.2: the response is 200 whether or not the token was
	// known, so revocation is no oracle for token validity. A token issued
	// to another client is left alone.
	if looksLikeJWT(tok) {
		c, err := is.verifier.Verify(ctx, tok)
		if err != nil {
			if verify.ReasonOf(err) == verify.ReasonForged {
				is.forgedToken(r, client.ID, tok, "revocation")
			}
			writeJSON(w, http.StatusOK, struct{}{})
			return
		}
		if c.ClientID == client.ID {
			if err := is.store.RevokeReceipt(ctx, c.JTI, now); err != nil {
				is.log.Error("revoking an access token", "err", err)
				writeOAuthError(w, errUnavailable)
				return
			}
			is.emit(ctx, event.Event{Class: event.ClassToken, Type: "token_revoked", Actor: client.ID, Subject: c.Subject,
				Client: client.ID, IP: clientIP(r), Fields: map[string]any{"jti": c.JTI, "kind": "access", "kid": c.KeyID}})
		}
		writeJSON(w, http.StatusOK, struct{}{})
		return
	}
	rt, err := is.store.RefreshToken(ctx, secretHash(tok))
	if err == nil && rt.ClientID == client.ID {
		n, err := is.store.RevokeFamily(ctx, rt.FamilyID, now)
		if err != nil {
			is.log.Error("revoking a refresh token", "err", err)
			writeOAuthError(w, errUnavailable)
			return
		}
		is.emit(ctx, event.Event{Class: event.ClassToken, Type: "token_revoked", Actor: client.ID, Subject: rt.Subject,
			Client: client.ID, IP: clientIP(r), Fields: map[string]any{"jti": rt.JTI, "kind": "refresh", "family": rt.FamilyID, "revoked": n}})
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		is.log.Error("loading a refresh token", "err", err)
		writeOAuthError(w, errUnavailable)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (is *Issuer) userinfo(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="custos"`)
		writeJSON(w, http.StatusUnauthorized, &oauthError{Code: "invalid_request", Description: "a bearer access token is required"})
		return
	}
	c, err := is.verifier.Verify(r.Context(), tok)
	if err != nil {
		if verify.ReasonOf(err) == verify.ReasonForged {
			is.forgedToken(r, "", tok, "userinfo")
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="custos", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, &oauthError{Code: "invalid_token", Description: "the access token is not valid"})
		return
	}
	if !c.HasScope("openid") || c.SessionID == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="custos", error="insufficient_scope", scope="openid"`)
		writeJSON(w, http.StatusForbidden, &oauthError{Code: "insufficient_scope", Description: "the openid scope is required"})
		return
	}
	acc, err := is.accounts.Account(r.Context(), c.Subject)
	if err != nil || acc.Disabled() {
		w.Header().Set("WWW-Authenticate", `Bearer realm="custos", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, &oauthError{Code: "invalid_token", Description: "the access token is not valid"})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Sub string `json:"sub"`
		userClaims
	}{c.Subject, profileClaims(acc, c.Scope)})
}

// ReceiptStore is the store's receipt lookup.
type ReceiptStore interface {
	Receipt(ctx context.Context, jti string) (store.Receipt, error)
}

// LocalReceipts is the in-process receipt checker over the store, for
// verifiers that run beside custos (the issuer's own endpoints, the guard).
func LocalReceipts(st ReceiptStore) verify.ReceiptChecker {
	return verify.LocalReceipts(receiptLookup{st})
}

// receiptLookup adapts the store to verify.ReceiptLookup.
type receiptLookup struct{ st ReceiptStore }

func (l receiptLookup) Receipt(ctx context.Context, jti string) (verify.ReceiptRecord, error) {
	r, err := l.st.Receipt(ctx, jti)
	if errors.Is(err, store.ErrNotFound) {
		return verify.ReceiptRecord{}, verify.ErrNoReceipt
	}
	if err != nil {
		return verify.ReceiptRecord{}, err
	}
	return verify.ReceiptRecord{
		JTI: r.JTI, Kind: string(r.Kind), Subject: r.Subject, ClientID: r.ClientID, KeyID: r.KeyID,
		IssuedAt: r.IssuedAt, ExpiresAt: r.ExpiresAt, Revoked: r.Revoked(),
	}, nil
}
