package node

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/custos-dev/custos/internal/issuer"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/verify"
)

// The admin API: alerts, for a security team's own tools. A caller is a
// client custos registered, with a client-credentials access token for
// the audience ISSUER/admin and the scope for what it does.
const (
	PathAdmin         = "/admin/"
	ScopeAlertsRead   = "alerts:read"
	ScopeAlertsManage = "alerts:manage"
)

// AdminAudience is the audience the admin API's tokens name.
func (n *Node) AdminAudience() string { return n.cfg.Issuer + "/admin" }

// adminHandler serves the admin API under /admin/.
func (n *Node) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/alerts", n.admin(ScopeAlertsRead, n.adminAlerts))
	mux.HandleFunc("GET /admin/alerts/{id}", n.admin(ScopeAlertsRead, n.adminAlert))
	mux.HandleFunc("POST /admin/alerts/{id}/ack", n.admin(ScopeAlertsManage, n.adminAck))
	return mux
}

// admin checks the caller's token (receipt included) and scope.
func (n *Node) admin(scope string, h func(w http.ResponseWriter, r *http.Request, c *verify.Claims)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer`)
			adminError(w, http.StatusUnauthorized, "no_token")
			return
		}
		v, err := n.verifier(n.AdminAudience(), issuer.LocalReceipts(n.Store))
		if err != nil {
			adminError(w, http.StatusServiceUnavailable, "unavailable")
			return
		}
		c, err := v.Verify(r.Context(), tok)
		if err != nil {
			reason := verify.ReasonOf(err)
			if reason == "" || reason == verify.ReasonUnavailable {
				adminError(w, http.StatusServiceUnavailable, "unavailable")
				return
			}
			if reason == verify.ReasonForged {
				n.Issuer.RecordForged(r, "", tok, "admin_api")
			}
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			adminError(w, http.StatusUnauthorized, string(reason))
			return
		}
		// A service's token, from client credentials: never a token a
		// customer signed in for, whatever its client may ask for.
		if c.SessionID != "" || c.Subject != c.ClientID {
			adminError(w, http.StatusForbidden, "client_credentials_only")
			return
		}
		if n.blocks.blocked(clientAddr(r), now(n.cfg)) {
			adminError(w, http.StatusForbidden, "ip_blocked")
			return
		}
		if !c.HasScope(scope) {
			w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+scope+`"`)
			adminError(w, http.StatusForbidden, "insufficient_scope")
			return
		}
		h(w, r, c)
	}
}

func adminError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code})
}

func adminJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// AlertJSON is an alert as the admin API shows it.
type AlertJSON struct {
	ID         string    `json:"id"`
	Rule       string    `json:"rule"`
	Severity   string    `json:"severity"`
	Title      string    `json:"title"`
	Group      string    `json:"group"`
	State      string    `json:"state"`
	Count      int64     `json:"count"`
	FirstIndex uint64    `json:"first_index"`
	LastIndex  uint64    `json:"last_index"`
	FirstAt    time.Time `json:"first_at"`
	LastAt     time.Time `json:"last_at"`
	RaisedAt   time.Time `json:"raised_at"`
	AckedBy    string    `json:"acked_by,omitempty"`
	AckedAt    time.Time `json:"acked_at,omitzero"`
	AckNote    string    `json:"ack_note,omitempty"`
}

// AlertView is a as the admin API and the command line show it.
func AlertView(a store.Alert) AlertJSON {
	return AlertJSON{ID: a.ID, Rule: a.Rule, Severity: a.Severity, Title: a.Title, Group: a.Group, State: string(a.State),
		Count: a.Count, FirstIndex: a.FirstIndex, LastIndex: a.LastIndex, FirstAt: a.FirstAt, LastAt: a.LastAt,
		RaisedAt: a.RaisedAt, AckedBy: a.AckedBy, AckedAt: a.AckedAt, AckNote: a.AckNote}
}

func (n *Node) adminAlerts(w http.ResponseWriter, r *http.Request, _ *verify.Claims) {
	q := r.URL.Query()
	f := store.AlertFilter{Rule: q.Get("rule"), Limit: 100}
	switch s := q.Get("state"); s {
	case "", "open":
		f.State = store.AlertOpen
	case "acked":
		f.State = store.AlertAcked
	case "all":
	default:
		adminError(w, http.StatusBadRequest, "state: want open, acked or all")
		return
	}
	if l := q.Get("limit"); l != "" {
		v, err := strconv.Atoi(l)
		if err != nil || v < 1 || v > 1000 {
			adminError(w, http.StatusBadRequest, "limit: want 1 to 1000")
			return
		}
		f.Limit = v
	}
	list, err := n.Store.Alerts(r.Context(), f)
	if err != nil {
		n.log.Error("admin: alerts", "err", err)
		adminError(w, http.StatusServiceUnavailable, "unavailable")
		return
	}
	out := make([]AlertJSON, 0, len(list))
	for _, a := range list {
		out = append(out, AlertView(a))
	}
	adminJSON(w, map[string]any{"alerts": out})
}

func (n *Node) adminAlert(w http.ResponseWriter, r *http.Request, _ *verify.Claims) {
	a, err := n.Store.Alert(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		adminError(w, http.StatusNotFound, "no_such_alert")
	case err != nil:
		adminError(w, http.StatusServiceUnavailable, "unavailable")
	default:
		adminJSON(w, AlertView(a))
	}
}

func (n *Node) adminAck(w http.ResponseWriter, r *http.Request, c *verify.Claims) {
	var body struct {
		Note string `json:"note"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 8<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		adminError(w, http.StatusBadRequest, `want {"note": "what was done"}`)
		return
	}
	a, err := n.AckAlert(r.Context(), r.PathValue("id"), "client:"+c.ClientID, body.Note)
	switch {
	case errors.Is(err, store.ErrNotFound):
		adminError(w, http.StatusNotFound, "no_such_alert")
	case errors.Is(err, ErrAlertNotOpen):
		adminError(w, http.StatusConflict, "alert_not_open")
	case errors.Is(err, ErrBadNote):
		adminError(w, http.StatusBadRequest, "note: 1 to 500 bytes of printable text, saying what was done")
	case err != nil:
		n.log.Error("admin: ack", "err", err)
		adminError(w, http.StatusServiceUnavailable, "unavailable")
	default:
		adminJSON(w, AlertView(a))
	}
}

// clientAddr is the request's peer address, without its port.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
