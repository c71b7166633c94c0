package node_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/chacha20poly1305"
	_ "modernc.org/sqlite"

	"github.com/custos-dev/custos/internal/accounts"
	"github.com/custos-dev/custos/internal/cli"
	"github.com/custos-dev/custos/internal/clients"
	"github.com/custos-dev/custos/internal/leakcheck"
	"github.com/custos-dev/custos/internal/node"
	"github.com/custos-dev/custos/internal/store/sqlite"
	"github.com/custos-dev/custos/internal/tlog"
)

// TestNoPrivateKeyBytesAnywhere is invariant I1 end to end: a node runs a
// full OAuth flow (good and bad requests alike) and the CLI administers the
// same data directory, with every log line, HTTP response, CLI output and
// error kept. The test then recovers every secret the data directory holds —
// the root key, the node's device and CSRF keys, and every signing key with
// its data-encryption key, by unsealing them as docs/spec/key-lifecycle.md
// §7 describes — and proves that none of them appears, in any encoding
// leakcheck knows, in anything custos wrote: logs, responses, CLI output,
// errors, events, or the raw database files a backup would copy.
func TestNoPrivateKeyBytesAnywhere(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug, AddSource: true}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	cfg := node.Config{DataDir: dataDir, Addr: ln.Addr().String(), Logger: logger}
	cfg.Accounts = accounts.Config{Params: accounts.DefaultParams()}
	n, err := node.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stopServing := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- n.Serve(serveCtx, ln) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		stopServing()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	t.Cleanup(stop)
	base := n.Config().Issuer
	ctx := t.Context()

	var hay haystacks
	keep := func(name string, err error) {
		if err != nil {
			hay.add(name, fmt.Sprintf("%v\n%+v\n%#v\n%s", err, err, err, err.Error()))
		}
	}

	const redirect = "http://127.0.0.1:9/callback"
	const password = "correct horse battery staple"
	_, _, err = n.Clients.Add(ctx, clients.Spec{ID: "shop-app", Name: "Shop", Public: true, RedirectURIs: []string{redirect}}, "test")
	keep("clients.Add shop-app", err)
	_, apiSecret, err := n.Clients.Add(ctx, clients.Spec{ID: "shop-api", Scopes: []string{"orders:read"}}, "test")
	keep("clients.Add shop-api", err)
	_, _, err = n.Clients.Add(ctx, clients.Spec{ID: "shop-app"}, "test")
	keep("clients.Add duplicate", err)
	if err == nil {
		t.Fatal("a duplicate client was registered")
	}
	if _, err := n.Accounts.Register(ctx, "minjun@example.com", "김민준", password, "test"); err != nil {
		t.Fatal(err)
	}
	_, err = n.Accounts.Register(ctx, "minjun@example.com", "Other", password, "test")
	keep("accounts.Register duplicate", err)

	// The HTTP flow. Every response, headers and body, is kept.
	rec := &recorder{next: http.DefaultTransport}
	jar, _ := cookiejar.New(nil)
	web := &http.Client{Transport: rec, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, form url.Values, edit func(*http.Request)) (int, []byte, http.Header) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if edit != nil {
			edit(req)
		}
		resp, err := web.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b, resp.Header
	}
	basic := func(id, secret string) func(*http.Request) {
		return func(r *http.Request) { r.SetBasicAuth(id, secret) }
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	want := func(what string, got, want int, body []byte) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: status %d, want %d\n%s", what, got, want, body)
		}
	}
	tokens := func(what string, body []byte) (access, refresh, id string) {
		t.Helper()
		var out struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
			IDToken      string `json:"id_token"`
		}
		if err := json.Unmarshal(body, &out); err != nil || out.AccessToken == "" {
			t.Fatalf("%s: no access token in %s (%v)", what, body, err)
		}
		return out.AccessToken, out.RefreshToken, out.IDToken
	}

	status, body, _ := do("GET", "/.well-known/openid-configuration", nil, nil)
	want("discovery", status, 200, body)
	status, body, _ = do("GET", "/oauth2/jwks", nil, nil)
	want("JWKS", status, 200, body)

	// Sign in: one wrong password, then the right one.
	verifier := base64.RawURLEncoding.EncodeToString(randomBytes(t, 32))
	challenge := sha256.Sum256([]byte(verifier))
	authQuery := url.Values{
		"response_type": {"code"}, "client_id": {"shop-app"}, "redirect_uri": {redirect},
		"scope": {"openid profile email"}, "state": {"st-1"}, "nonce": {"nonce-1"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(challenge[:])}, "code_challenge_method": {"S256"},
	}.Encode()
	status, page, _ := do("GET", "/oauth2/authorize?"+authQuery, nil, nil)
	want("sign-in page", status, 200, page)
	signInForm := func(page []byte, pw string) url.Values {
		form := url.Values{"login_id": {"minjun@example.com"}, "password": {pw}}
		for _, m := range hiddenInput.FindAllStringSubmatch(string(page), -1) {
			form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
		}
		if form.Get("csrf") == "" {
			t.Fatalf("sign-in page without a CSRF token:\n%s", page)
		}
		return form
	}
	status, page, _ = do("POST", "/oauth2/authorize", signInForm(page, "wrong password 1"), nil)
	want("sign-in with a wrong password", status, http.StatusUnauthorized, page)
	status, body, hdr := do("POST", "/oauth2/authorize", signInForm(page, password), nil)
	want("sign-in", status, http.StatusSeeOther, body)
	loc, err := url.Parse(hdr.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("sign-in redirected to %q", hdr.Get("Location"))
	}
	code := loc.Query().Get("code")

	exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect},
		"client_id": {"shop-app"}, "code_verifier": {verifier}}
	status, body, _ = do("POST", "/oauth2/token", exchange, nil)
	want("code exchange", status, 200, body)
	at, rt, idt := tokens("code exchange", body)

	status, body, _ = do("GET", "/oauth2/userinfo", nil, bearer(at))
	want("userinfo", status, 200, body)
	status, body, _ = do("POST", "/oauth2/introspect", url.Values{"token": {at}}, basic("shop-api", apiSecret))
	want("introspection", status, 200, body)

	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"shop-app"}}
	status, body, _ = do("POST", "/oauth2/token", refresh, nil)
	want("refresh", status, 200, body)
	at2, rt2, _ := tokens("refresh", body)
	status, body, _ = do("POST", "/oauth2/token", refresh, nil)
	want("reuse of a spent refresh token", status, 400, body)
	status, body, _ = do("POST", "/oauth2/introspect", url.Values{"token": {at2}}, basic("shop-api", apiSecret))
	want("introspection after reuse", status, 200, body)
	if !bytes.Contains(body, []byte(`"active":false`)) {
		t.Fatalf("after refresh-token reuse the family is still active: %s", body)
	}
	status, body, _ = do("POST", "/oauth2/revoke", url.Values{"token": {rt2}, "client_id": {"shop-app"}}, nil)
	want("revocation", status, 200, body)

	cc := url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:read"}}
	status, body, _ = do("POST", "/oauth2/token", cc, basic("shop-api", apiSecret))
	want("client credentials", status, 200, body)
	svcToken, _, _ := tokens("client credentials", body)

	// Bad requests of every kind.
	bad := []struct {
		method, path string
		form         url.Values
		edit         func(*http.Request)
		want         int
	}{
		{"POST", "/oauth2/token", exchange, nil, 400}, // a replayed code; revokes what it issued
		{"POST", "/oauth2/token", url.Values{"grant_type": {"password"}, "client_id": {"shop-app"}, "username": {"a"}, "password": {"b"}}, nil, 400},
		{"POST", "/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {"nope"}, "client_id": {"shop-app"}, "redirect_uri": {redirect}, "code_verifier": {verifier}}, nil, 400},
		{"POST", "/oauth2/token", cc, basic("shop-api", "wrong secret"), 401},
		{"POST", "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}, nil, 401},
		{"POST", "/oauth2/token", nil, nil, 400},
		{"GET", "/oauth2/authorize?client_id=nobody&response_type=code", nil, nil, 400},
		{"GET", "/oauth2/authorize?" + strings.Replace(authQuery, "S256", "plain", 1), nil, nil, http.StatusSeeOther},
		{"POST", "/oauth2/introspect", url.Values{"token": {at}}, nil, 401},
		{"POST", "/oauth2/introspect", url.Values{"token": {"garbage"}}, basic("shop-api", apiSecret), 200},
		{"GET", "/oauth2/userinfo", nil, bearer("garbage"), 401},
		{"GET", "/oauth2/userinfo", nil, bearer(at2), 401},
		{"GET", "/oauth2/userinfo", nil, bearer(idt), 401},
		{"POST", "/oauth2/revoke", url.Values{"token": {"garbage"}}, nil, 401},
		{"GET", "/oauth2/logout?id_token_hint=garbage", nil, nil, 400},
		{"DELETE", "/oauth2/jwks", nil, nil, 405},
		{"GET", "/no/such/path", nil, nil, 404},
	}
	for i, b := range bad {
		if status, body, _ := do(b.method, b.path, b.form, b.edit); status != b.want {
			t.Errorf("bad request %d, %s %s: status %d, want %d\n%s", i, b.method, b.path, status, b.want, body)
		}
	}

	// The CLI against the same data directory, while the node serves.
	seed := randomBytes(t, ed25519.SeedSize)
	imported := ed25519.NewKeyFromSeed(seed)
	importedDER, err := x509.MarshalPKCS8PrivateKey(imported)
	if err != nil {
		t.Fatal(err)
	}
	pemFile := filepath.Join(t.TempDir(), "legacy.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: importedDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	runCLI := func(stdin string, args ...string) (string, error) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		err := cli.Run(ctx, args, cli.IO{Stdin: strings.NewReader(stdin), Stdout: &stdout, Stderr: &stderr})
		name := "custos " + strings.Join(args, " ")
		hay.add(name+" (stdout)", stdout.String())
		hay.add(name+" (stderr)", stderr.String())
		keep(name+" (error)", err)
		return stdout.String(), err
	}
	data := "--data=" + dataDir
	if _, err := runCLI("", "keys", "list", data); err != nil {
		t.Fatalf("keys list: %v", err)
	}
	out, err := runCLI("", "keys", "import", data, pemFile)
	if err != nil {
		t.Fatalf("keys import: %v", err)
	}
	importedKid := strings.Fields(out)[1]
	if tp, err := (&jose.JSONWebKey{Key: imported.Public()}).Thumbprint(crypto.SHA256); err != nil || base64.RawURLEncoding.EncodeToString(tp) != importedKid {
		t.Fatalf("keys import named the key %q, not its RFC 7638 thumbprint (%v)", importedKid, err)
	}
	if _, err := runCLI("", "keys", "import", data, pemFile); err == nil {
		t.Fatal("the same key was imported twice")
	}
	if _, err := runCLI(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: importedDER})), "keys", "import", data, "-"); err == nil {
		t.Fatal("the same key was imported twice from standard input")
	}
	out, err = runCLI("", "keys", "list", data, "--json")
	if err != nil {
		t.Fatalf("keys list --json: %v", err)
	}
	var listed []struct {
		Kid, State string
		Imported   bool
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("keys list --json: %v\n%s", err, out)
	}
	var pendingKid string
	for _, k := range listed {
		if k.State == "pending" {
			pendingKid = k.Kid
		}
		if k.Kid == importedKid && (!k.Imported || k.State != "active") {
			t.Fatalf("imported key listed as %+v", k)
		}
	}
	if pendingKid == "" {
		t.Fatalf("no pending key in %s", out)
	}
	// Revoking a key destroys its sealed private key, so take a copy of
	// it first: the test must still be able to look for the key's bytes.
	pendingSealed := sealedKey(t, dataDir, pendingKid)
	if _, err := runCLI("", "keys", "revoke", data, "--reason", "test revocation", pendingKid); err != nil {
		t.Fatalf("keys revoke: %v", err)
	}
	if left := sealedKey(t, dataDir, pendingKid); len(left) != 0 {
		t.Fatalf("the revoked key's sealed private key is still stored (%d bytes)", len(left))
	}
	if _, err := runCLI("", "keys", "rotate", data, "--reason", "too early"); err == nil {
		t.Fatal("keys rotate succeeded although the pending key was just created")
	}
	runCLI("", "keys", "revoke", data, "--reason", "no such key", "kid-that-does-not-exist")
	runCLI("", "keys", "import", data, filepath.Join(t.TempDir(), "missing.pem"))
	runCLI("not a key", "keys", "import", data, "-")
	runCLI("", "keys", "list", data)
	runCLI("", "clients", "list", data, "--json")
	runCLI("", "accounts", "list", data, "--json")
	runCLI(password+"\n", "accounts", "add", data, "--login", "jiwoo@example.com", "--name", "Jiwoo")
	runCLI("", "token", "inspect", at)
	runCLI("", "token", "inspect", svcToken)
	runCLI("", "token", "inspect", "not.a.token")

	// The serving node picks the imported key up and signs with it; a token
	// forged with the same key (no receipt) is refused.
	deadline := time.Now().Add(5 * time.Second)
	var signed string
	for {
		status, body, _ = do("POST", "/oauth2/token", cc, basic("shop-api", apiSecret))
		want("client credentials after import", status, 200, body)
		signed, _, _ = tokens("client credentials after import", body)
		if kidOf(t, signed) == importedKid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the serving node still signs with %s, not the imported key %s", kidOf(t, signed), importedKid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	forged := forgeLike(t, signed, imported)
	status, body, _ = do("POST", "/oauth2/introspect", url.Values{"token": {forged}}, basic("shop-api", apiSecret))
	want("introspection of a forged token", status, 200, body)
	if !bytes.Contains(body, []byte(`"active":false`)) {
		t.Fatalf("a token forged with the imported key is active: %s", body)
	}
	do("GET", "/oauth2/userinfo", nil, bearer(forged))
	status, jwks, _ := do("GET", "/oauth2/jwks", nil, nil)
	want("JWKS", status, 200, jwks)

	// Snapshot the data directory while the node runs (WAL in use), then
	// stop it and snapshot again.
	snapshot := func(when string) {
		entries, err := os.ReadDir(dataDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() == node.RootKeyFile {
				continue
			}
			names := []string{e.Name()}
			if e.IsDir() { // the audit log's segment files
				sub, err := os.ReadDir(filepath.Join(dataDir, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				names = names[:0]
				for _, f := range sub {
					names = append(names, filepath.Join(e.Name(), f.Name()))
				}
			}
			for _, name := range names {
				b, err := os.ReadFile(filepath.Join(dataDir, name))
				if errors.Is(err, os.ErrNotExist) {
					continue // -wal and -shm come and go
				}
				if err != nil {
					t.Fatal(err)
				}
				hay.add("data file "+name+" "+when, string(b))
			}
		}
	}
	snapshot("while serving")
	stop()
	snapshot("after stopping")
	hay.add("logs", logs.String())
	for i, d := range rec.dumps() {
		hay.add(fmt.Sprintf("HTTP response %d", i), string(d))
	}

	// Recover every secret.
	root, err := os.ReadFile(filepath.Join(dataDir, node.RootKeyFile))
	if err != nil || len(root) != 32 {
		t.Fatalf("root key: %d bytes, %v", len(root), err)
	}
	sealedSecrets, err := os.ReadFile(filepath.Join(dataDir, "secrets.sealed"))
	if err != nil {
		t.Fatal(err)
	}
	nodeSecrets := openLocal(t, root, sealedSecrets, []byte("custos-node-secrets/v1"))
	if len(nodeSecrets) != 64 {
		t.Fatalf("node secrets are %d bytes, want 64", len(nodeSecrets))
	}
	secrets := []namedSecret{
		{"root key", root},
		{"device key", nodeSecrets[:32]},
		{"CSRF key", nodeSecrets[32:]},
		{"imported key PKCS#8", importedDER},
		{"imported key seed", seed},
		// Not key material, but no less a secret: the customer's password
		// and the service's client secret are never echoed, logged or
		// stored in the clear either.
		{"customer password", []byte(password)},
		{"client secret", []byte(apiSecret)},
	}

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "custos.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT id, algorithm, state, public_jwk, sealed, sealer FROM signing_keys`)
	if err != nil {
		t.Fatal(err)
	}
	recovered := map[string]crypto.Signer{}
	states := map[string]string{}
	backup := []byte(hay.get("data file custos.db after stopping"))
	for rows.Next() {
		var kid, alg, state, sealerName string
		var pubJWK, sealed []byte
		if err := rows.Scan(&kid, &alg, &state, &pubJWK, &sealed, &sealerName); err != nil {
			t.Fatal(err)
		}
		states[kid] = state
		if state == "revoked" {
			if len(sealed) != 0 {
				t.Fatalf("revoked key %s still has its sealed private key", kid)
			}
			sealed = pendingSealed // the copy taken before revocation
		} else if !bytes.Contains(backup, sealed) {
			t.Fatalf("key %s: the database file does not hold its sealed blob, so scanning it proves nothing", kid)
		}
		der, dek := unsealKey(t, root, kid, alg, sealed)
		priv, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			t.Fatalf("key %s: unsealed bytes are not PKCS#8: %v", kid, err)
		}
		signer, ok := priv.(crypto.Signer)
		if !ok {
			t.Fatalf("key %s: %T", kid, priv)
		}
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(pubJWK); err != nil {
			t.Fatalf("key %s: public JWK: %v", kid, err)
		}
		if !samePublic(signer.Public(), jwk.Key) {
			t.Fatalf("key %s: the unsealed private key does not match the stored public key", kid)
		}
		if tp, err := jwk.Thumbprint(crypto.SHA256); err != nil || base64.RawURLEncoding.EncodeToString(tp) != kid {
			t.Fatalf("key %s: thumbprint of the stored public key is %x (%v)", kid, tp, err)
		}
		recovered[kid] = signer
		secrets = append(secrets, namedSecret{"DEK of " + kid, dek})
		if kid == importedKid {
			if !bytes.Equal(der, importedDER) {
				t.Fatal("the imported key unsealed to different bytes than were imported")
			}
			continue // its PKCS#8 and seed are in the list already
		}
		secrets = append(secrets, namedSecret{"PKCS#8 of " + kid, der})
		switch k := priv.(type) {
		case ed25519.PrivateKey:
			secrets = append(secrets, namedSecret{"seed of " + kid, k.Seed()}, namedSecret{"Ed25519 private key " + kid, k})
		case *ecdsa.PrivateKey:
			d, err := k.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, namedSecret{"ECDSA scalar of " + kid, d})
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	// active (imported), retired (the first), revoked (the first pending),
	// pending (its successor).
	if len(recovered) != 4 || states[importedKid] != "active" || states[pendingKid] != "revoked" {
		t.Fatalf("recovered %d keys, states %v; want 4 with the imported one active", len(recovered), states)
	}

	// Every key in the JWKS is one the test holds the private half of.
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 3 {
		t.Fatalf("JWKS has %d keys, want 3 (active, retired, pending)", len(set.Keys))
	}
	for _, k := range set.Keys {
		signer, ok := recovered[k.KeyID]
		if !ok || !samePublic(signer.Public(), k.Key) {
			t.Fatalf("JWKS key %s does not match any unsealed private key", k.KeyID)
		}
	}
	if _, ok := recovered[importedKid]; !ok {
		t.Fatal("the imported key was not recovered")
	}

	// Every audit event, as logged, wherever its bytes are stored.
	var events strings.Builder
	nEvents := 0
	st, err := sqlite.Open(ctx, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	state, err := st.LogState(ctx)
	if err == nil {
		err = tlog.ReadEntries(ctx, st, 0, state.Sequenced, func(_ uint64, e []byte) error {
			events.Write(e)
			events.WriteByte('\n')
			nEvents++
			return nil
		})
	}
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"key_imported", "key_revoked", "key_created", "key_activated", "note_key_created"} {
		if !strings.Contains(events.String(), `"type":"`+typ+`"`) {
			t.Errorf("no %s event among %d events", typ, nEvents)
		}
	}
	hay.add("audit log entries", events.String())

	// The secrets must be key-sized and distinct, or a match means nothing.
	seen := map[string]string{}
	for _, s := range secrets {
		if len(s.value) < leakcheck.MinSecretLen {
			t.Fatalf("secret %s is only %d bytes", s.name, len(s.value))
		}
		if other, dup := seen[string(s.value)]; dup {
			t.Fatalf("secrets %s and %s are equal", s.name, other)
		}
		seen[string(s.value)] = s.name
	}

	// The check, and controls that prove it can fail.
	values := make([][]byte, len(secrets))
	for i, s := range secrets {
		values[i] = s.value
	}
	checked := 0
	for _, h := range hay.list() {
		for _, f := range leakcheck.Find([]byte(h.text), values...) {
			t.Errorf("%s holds a secret: %s", h.name, nameFinding(f, secrets))
		}
		checked += len(h.text)
	}
	if hay.count() < 50 || checked < 100_000 {
		t.Fatalf("only %d haystacks, %d bytes: the flow did not run", hay.count(), checked)
	}
	mustGet := func(name string) string {
		text := hay.get(name)
		if text == "" {
			t.Fatalf("no haystack %q", name)
		}
		return text
	}
	// Controls: the same check finds a secret planted in a copy of a real
	// haystack, so the test can fail.
	plants := []struct {
		name   string
		secret string // the planted secret's name
		plant  func([]byte) string
	}{
		{"PEM in the logs", "imported key PKCS#8", func(s []byte) string {
			return logs.String() + string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: s}))
		}},
		{"%v in a CLI error", "imported key seed", func(s []byte) string {
			return mustGet("custos keys rotate "+data+" --reason too early (error)") + fmt.Sprintf("open key: %v", s)
		}},
		{"hex in a response", "root key", func(s []byte) string {
			return mustGet("HTTP response 0") + fmt.Sprintf("{\"debug\":\"%x\"}", s)
		}},
		{"raw bytes inside the database file", "DEK of " + importedKid, func(s []byte) string {
			return string(backup[:len(backup)/2]) + string(s) + string(backup[len(backup)/2:])
		}},
		{"base64url inside a cookie", "CSRF key", func(s []byte) string {
			return "Set-Cookie: csrf=" + base64.RawURLEncoding.EncodeToString(append([]byte{7}, s...))
		}},
		{"Go-quoted in an event", "seed of " + pendingKid, func(s []byte) string {
			return events.String() + fmt.Sprintf("%q", s)
		}},
		{"the password in the logs", "customer password", func(s []byte) string {
			return logs.String() + `{"msg":"sign-in","password":"` + string(s) + `"}`
		}},
	}
	for _, p := range plants {
		i := slices.IndexFunc(secrets, func(s namedSecret) bool { return s.name == p.secret })
		if i < 0 {
			t.Fatalf("control %q: no secret named %q", p.name, p.secret)
		}
		found := leakcheck.Find([]byte(p.plant(values[i])), values...)
		if !slices.ContainsFunc(found, func(f string) bool { return strings.HasPrefix(f, fmt.Sprintf("secret #%d ", i)) }) {
			t.Errorf("control %q: leakcheck missed the planted %s (found %q)", p.name, p.secret, found)
		}
	}
}

// sealedKey reads a key's sealed blob from the database of a running node.
func sealedKey(t *testing.T, dataDir, kid string) []byte {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "custos.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var sealed []byte
	if err := db.QueryRow(`SELECT sealed FROM signing_keys WHERE id = ?`, kid).Scan(&sealed); err != nil {
		t.Fatalf("key %s: %v", kid, err)
	}
	return sealed
}

// unsealKey opens a signing_keys.sealed blob as docs/spec/key-lifecycle.md §7
// specifies, written here from the spec, not from custody's code:
//
//	"custos-sealed-key/v1\n" ‖ u16be(len(sealedDEK)) ‖ sealedDEK ‖ nonce[24] ‖ ciphertext
//
// It returns the PKCS#8 DER and the DEK.
func unsealKey(t *testing.T, root []byte, kid, alg string, blob []byte) (der, dek []byte) {
	t.Helper()
	rest, ok := bytes.CutPrefix(blob, []byte("custos-sealed-key/v1\n"))
	if !ok || len(rest) < 2 {
		t.Fatalf("key %s: sealed blob is not custos-sealed-key/v1", kid)
	}
	n := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) < n+chacha20poly1305.NonceSizeX {
		t.Fatalf("key %s: sealed blob truncated", kid)
	}
	sealedDEK, nonce, ciphertext := rest[:n], rest[n:n+chacha20poly1305.NonceSizeX], rest[n+chacha20poly1305.NonceSizeX:]
	dek = openLocal(t, root, sealedDEK, specAAD("custos-dek/v1", kid))
	aead, err := chacha20poly1305.NewX(dek)
	if err != nil {
		t.Fatalf("key %s: DEK: %v", kid, err)
	}
	der, err = aead.Open(nil, nonce, ciphertext, specAAD("custos-sealed-key/v1", kid, alg))
	if err != nil {
		t.Fatalf("key %s: the private key does not open with its DEK and the specified AAD: %v", kid, err)
	}
	return der, dek
}

// specAAD is label ‖ u16be(len(part)) ‖ part for each part.
func specAAD(label string, parts ...string) []byte {
	out := []byte(label)
	for _, p := range parts {
		out = binary.BigEndian.AppendUint16(out, uint16(len(p)))
		out = append(out, p...)
	}
	return out
}

// openLocal opens what the local sealers seal: nonce[24] ‖ ciphertext ‖ tag,
// XChaCha20-Poly1305 under the root key.
func openLocal(t *testing.T, root, sealed, aad []byte) []byte {
	t.Helper()
	aead, err := chacha20poly1305.NewX(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		t.Fatal("sealed value too short")
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], aad)
	if err != nil {
		t.Fatalf("does not open under the root key with AAD %q: %v", aad, err)
	}
	return plain
}

func samePublic(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && b != nil && k.Equal(b)
}

// forgeLike signs a copy of token's header and claims (with a new jti) with
// key: what an insider holding the key would mint.
func forgeLike(t *testing.T, token string, key ed25519.PrivateKey) string {
	t.Helper()
	parts := strings.Split(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	claims["jti"] = "forged-" + base64.RawURLEncoding.EncodeToString(randomBytes(t, 9))
	claims["sub"] = "acc_someone_else"
	raw, _ = json.Marshal(claims)
	signingInput := parts[0] + "." + base64.RawURLEncoding.EncodeToString(raw)
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(signingInput)))
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

type namedSecret struct {
	name  string
	value []byte
}

// nameFinding turns leakcheck's "secret #i as ..." into the secret's name
// (never its value).
func nameFinding(f string, secrets []namedSecret) string {
	var i int
	if _, err := fmt.Sscanf(f, "secret #%d", &i); err == nil && i >= 0 && i < len(secrets) {
		return secrets[i].name + " (" + f + ")"
	}
	return f
}

// haystacks is everything custos wrote, by name.
type haystacks struct {
	mu    sync.Mutex
	names []string
	texts map[string]string
}

type haystack struct{ name, text string }

func (h *haystacks) add(name, text string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.texts == nil {
		h.texts = map[string]string{}
	}
	for base, i := name, 2; ; i++ {
		if _, dup := h.texts[name]; !dup {
			break
		}
		name = fmt.Sprintf("%s #%d", base, i)
	}
	h.names = append(h.names, name)
	h.texts[name] = text
}

func (h *haystacks) get(name string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.texts[name]
}

func (h *haystacks) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.names)
}

func (h *haystacks) list() []haystack {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]haystack, len(h.names))
	for i, n := range h.names {
		out[i] = haystack{n, h.texts[n]}
	}
	return out
}

// recorder keeps a dump (status line, headers and body) of every response.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	all  [][]byte
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	dump, err := httputil.DumpResponse(resp, true)
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	r.mu.Lock()
	r.all = append(r.all, dump)
	r.mu.Unlock()
	return resp, nil
}

func (r *recorder) dumps() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.all...)
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
