package node_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/clients"
	"github.com/custos-dev/custos/internal/detect"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/node"
)

// The admin API shows and acknowledges alerts, for a client custos issued
// a token to with the right scope; anything else is refused.
func TestAdminAlerts(t *testing.T) {
	n, base := startNode(t, nil)
	ctx := t.Context()
	clientToken := func(id string, scopes ...string) string {
		_, secret, err := n.Clients.Add(ctx, clients.Spec{ID: id, Scopes: scopes, Audiences: []string{n.AdminAudience()}}, "test")
		if err != nil {
			t.Fatal(err)
		}
		tok, err := postToken(http.DefaultClient, base, url.Values{"grant_type": {"client_credentials"}, "scope": {strings.Join(scopes, " ")}}, id, secret)
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	reader := clientToken("soc-dashboard", node.ScopeAlertsRead)
	// A customer's token from a client that may ask for the admin scopes.
	customer := customerToken(t, n, base, node.ScopeAlertsManage, n.AdminAudience())
	manager := clientToken("soc-bot", node.ScopeAlertsRead, node.ScopeAlertsManage)
	_, forge := stolenKey(t, n, base)
	_, forgeAdmin := stolenKeyFor(t, n, base, n.AdminAudience())

	// An alert to look at.
	if err := n.Audit.Emit(ctx, event.Event{Class: event.ClassAudit, Type: "hold_release_requested", Actor: "op_kim", Fields: map[string]any{"hold_id": "h1"}}); err != nil {
		t.Fatal(err)
	}
	d, err := n.Detector(ctx, detect.DefaultRules(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for {
		k, err := d.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			break
		}
	}

	call := func(method, path, tok, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, out := call("GET", "/admin/alerts", reader, "")
	list, _ := out["alerts"].([]any)
	if code != 200 || len(list) == 0 {
		t.Fatalf("GET /admin/alerts: %d %v", code, out)
	}
	var id string
	for _, a := range list {
		if m := a.(map[string]any); m["rule"] == "hold_release_requested" {
			id = m["id"].(string)
		}
	}
	if id == "" {
		t.Fatalf("no hold_release_requested alert in %v", list)
	}
	if code, out := call("GET", "/admin/alerts/"+id, reader, ""); code != 200 || out["state"] != "open" {
		t.Fatalf("GET one: %d %v", code, out)
	}
	for _, tc := range []struct {
		method, path, tok, body string
		code                    int
		err                     string
	}{
		{"GET", "/admin/alerts", "", "", 401, "no_token"},
		{"GET", "/admin/alerts", forge("soc-dashboard"), "", 401, "wrong_audience"}, // a forged token, for another audience
		{"GET", "/admin/alerts", forgeAdmin("soc-bot", "soc-bot", "alerts:manage"), "", 401, "forged_token"},
		{"POST", "/admin/alerts/" + id + "/ack", reader, `{"note":"x"}`, 403, "insufficient_scope"},
		{"POST", "/admin/alerts/" + id + "/ack", customer, `{"note":"x"}`, 403, "client_credentials_only"},
		{"GET", "/admin/alerts?state=closed", reader, "", 400, ""},
		{"GET", "/admin/alerts/nope", reader, "", 404, "no_such_alert"},
		{"POST", "/admin/alerts/" + id + "/ack", manager, `{"note":""}`, 400, ""},
		{"POST", "/admin/alerts/" + id + "/ack", manager, `{"note":"x","extra":1}`, 400, ""},
		{"POST", "/admin/alerts/" + id + "/ack", manager, `{"note":"legal approved the release, LGL-88"}`, 200, ""},
		{"POST", "/admin/alerts/" + id + "/ack", manager, `{"note":"again"}`, 409, "alert_not_open"},
	} {
		code, out := call(tc.method, tc.path, tc.tok, tc.body)
		if code != tc.code || tc.err != "" && out["error"] != tc.err {
			t.Errorf("%s %s: %d %v, want %d %s", tc.method, tc.path, code, out, tc.code, tc.err)
		}
	}
	if _, out := call("GET", "/admin/alerts/"+id, reader, ""); out["state"] != "acked" || out["acked_by"] != "client:soc-bot" {
		t.Errorf("after the ack: %v", out)
	}
	// The forged token is on record, as at the issuer's own endpoints.
	var where []string
	n.Audit.Query(ctx, audit.Filter{Types: []string{"forged_token"}}, func(r audit.Record) error {
		where = append(where, r.Event.Fields["where"].(string))
		return nil
	})
	if strings.Join(where, ",") != "admin_api" {
		t.Errorf("forged_token events at %q", where)
	}
}

// customerToken signs a customer in through the hosted login page of a
// public client that may ask for scope and audience, and returns the
// access token.
func customerToken(t *testing.T, n *node.Node, base, scope, audience string) string {
	t.Helper()
	const redirect = "http://127.0.0.1:9/callback"
	if _, _, err := n.Clients.Add(t.Context(), clients.Spec{ID: "staff-dashboard", Public: true, RedirectURIs: []string{redirect},
		Scopes: []string{"openid", scope}, Audiences: []string{audience}}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Accounts.Register(t.Context(), "staff.member@example.com", "Staff", "correct horse battery", "test"); err != nil {
		t.Fatal(err)
	}
	verifier := oauth2.GenerateVerifier()
	q := url.Values{"response_type": {"code"}, "client_id": {"staff-dashboard"}, "redirect_uri": {redirect}, "scope": {"openid " + scope},
		"state": {"s"}, "nonce": {"n"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
	loc := browserSignIn(t, base+"/oauth2/authorize?"+q.Encode(), "staff.member@example.com", "correct horse battery")
	form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {redirect},
		"client_id": {"staff-dashboard"}, "code_verifier": {verifier}}
	resp, err := http.PostForm(base+"/oauth2/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("customer token: %d %v", resp.StatusCode, err)
	}
	return tok.AccessToken
}
