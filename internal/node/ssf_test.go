package node_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/custos-dev/custos/internal/issuer"
	"github.com/custos-dev/custos/internal/node"
	"github.com/custos-dev/custos/internal/ssf"
)

// A customer's password change and a disabled account reach Shared
// Signals receivers as Security Event Tokens signed with a key in custos's
// JWKS: pushed to one receiver, polled by another, which acknowledges
// them.
func TestSharedSignals(t *testing.T) {
	n, base := startNode(t, nil)
	ctx := t.Context()
	var mu sync.Mutex
	var pushed []string
	var auth string
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		pushed, auth = append(pushed, string(b)), r.Header.Get("Authorization")
		mu.Unlock()
		if r.Header.Get("Content-Type") != "application/secevent+jwt" {
			t.Errorf("pushed as %q", r.Header.Get("Content-Type"))
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer receiver.Close()
	t.Setenv("TEST_SSF_AUTH", "Bearer receiver-credential")
	if _, err := n.AddSSFStream(ctx, node.SSFStreamSpec{ID: "crm", Audience: "https://crm.example", Push: receiver.URL + "/ssf", AuthEnv: "TEST_SSF_AUTH"}, "test"); err != nil {
		t.Fatal(err)
	}
	secret, err := n.AddSSFStream(ctx, node.SSFStreamSpec{ID: "bank", Audience: "https://bank.example", Events: []string{"account-disabled"}}, "test")
	if err != nil || secret == "" {
		t.Fatalf("poll stream: %q, %v", secret, err)
	}
	if _, err := n.AddSSFStream(ctx, node.SSFStreamSpec{ID: "bad", Audience: "x", Push: "http://crm.example/ssf"}, "test"); err == nil {
		t.Error("a plain-http push URL was taken")
	}
	if _, err := n.AddSSFStream(ctx, node.SSFStreamSpec{ID: "bad", Audience: "x", Events: []string{"account-deleted"}}, "test"); err == nil {
		t.Error("an unknown event type was taken")
	}

	acc, err := n.Accounts.Register(ctx, "minjun@example.com", "김민준", "correct horse battery", "test")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the transmitter has started
	if err := n.Accounts.SetPassword(ctx, acc.ID, "another correct horse", "op_kim"); err != nil {
		t.Fatal(err)
	}
	if err := n.Accounts.Disable(ctx, acc.ID, "op_kim", "closed at the customer's request"); err != nil {
		t.Fatal(err)
	}

	// Push: both events.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		k := len(pushed)
		mu.Unlock()
		if k >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pushed %d tokens in 10 s, want 2", k)
		}
		time.Sleep(50 * time.Millisecond)
	}
	jwks := fetchJWKS(t, base)
	types := map[string]map[string]any{}
	for _, tok := range pushed {
		c := verifySET(t, jwks, tok, "https://crm.example", base)
		for typ, detail := range c.Events {
			types[typ] = detail
		}
		if c.SubID["sub"] != acc.ID || c.SubID["iss"] != base {
			t.Errorf("sub_id %v", c.SubID)
		}
	}
	if d, ok := types[ssf.CredentialChange]; !ok || d["credential_type"] != "password" || d["initiating_entity"] != "admin" {
		t.Errorf("credential-change: %v", types)
	}
	if _, ok := types[ssf.AccountDisabled]; !ok {
		t.Errorf("account-disabled: %v", types)
	}
	if auth != "Bearer receiver-credential" {
		t.Errorf("pushed with Authorization %q", auth)
	}

	// Poll: only account-disabled, which this stream asked for.
	poll := func(secret string, body string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", base+node.PathSSFPoll+"bank", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if code, _ := poll("wrong secret", `{}`); code != 401 {
		t.Fatalf("poll with a wrong secret: %d", code)
	}
	var sets map[string]any
	for deadline := time.Now().Add(10 * time.Second); len(sets) == 0; {
		code, out := poll(secret, `{"maxEvents":10,"returnImmediately":true}`)
		if code != 200 {
			t.Fatalf("poll: %d %v", code, out)
		}
		sets, _ = out["sets"].(map[string]any)
		if time.Now().After(deadline) {
			t.Fatal("nothing to poll after 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var acks []string
	for jti, tok := range sets {
		c := verifySET(t, jwks, tok.(string), "https://bank.example", base)
		if _, ok := c.Events[ssf.AccountDisabled]; !ok || len(c.Events) != 1 || c.JTI != jti {
			t.Errorf("polled %v", c)
		}
		acks = append(acks, jti)
	}
	ackBody, _ := json.Marshal(map[string]any{"ack": acks, "maxEvents": 10})
	if code, out := poll(secret, string(ackBody)); code != 200 || len(out["sets"].(map[string]any)) != 0 {
		t.Fatalf("after acknowledging: %d %v", code, out)
	}
	resp, err := http.Get(base + node.PathSSFConfiguration)
	if err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	json.NewDecoder(resp.Body).Decode(&conf)
	resp.Body.Close()
	if conf["issuer"] != base || conf["jwks_uri"] != base+issuer.PathJWKS {
		t.Errorf("ssf-configuration %v", conf)
	}
}

type setClaims struct {
	Issuer   string                    `json:"iss"`
	Audience string                    `json:"aud"`
	JTI      string                    `json:"jti"`
	IssuedAt int64                     `json:"iat"`
	SubID    map[string]any            `json:"sub_id"`
	Events   map[string]map[string]any `json:"events"`
	TXN      string                    `json:"txn"`
}

func fetchJWKS(t *testing.T, base string) jose.JSONWebKeySet {
	t.Helper()
	resp, err := http.Get(base + issuer.PathJWKS)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	return set
}

// verifySET checks a Security Event Token as a receiver would: signed by a
// key in the JWKS, typ secevent+jwt, for it, from custos.
func verifySET(t *testing.T, jwks jose.JSONWebKeySet, tok, aud, iss string) setClaims {
	t.Helper()
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Header
	if h.ExtraHeaders["typ"] != ssf.TokenType {
		t.Errorf("typ %v", h.ExtraHeaders["typ"])
	}
	keys := jwks.Key(h.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %s not in the JWKS", h.KeyID)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("signature: %v", err)
	}
	var c setClaims
	json.Unmarshal(payload, &c)
	if c.Audience != aud || c.Issuer != iss || c.JTI == "" || c.TXN == "" || c.IssuedAt == 0 {
		t.Errorf("claims %+v", c)
	}
	return c
}
