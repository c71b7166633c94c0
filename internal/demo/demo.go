// Package demo seeds a custos node with a demo client and demo customers and
// serves a small relying party at /demo/, so a newcomer can sign in and see
// the tokens custos issues. It is only mounted by `custos serve --demo`.
package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/custos-dev/custos/internal/accounts"
	"github.com/custos-dev/custos/internal/clients"
	"github.com/custos-dev/custos/internal/issuer"
)

// ClientID is the demo relying party's client id.
const ClientID = "demo"

// Customer is a demo customer's sign-in.
type Customer struct {
	LoginID, Name, Password string
}

// Customers are the seeded demo customers. Their passwords are public: a
// demo data directory must never hold real customers.
var Customers = []Customer{
	{"minjun.kim@example.com", "김민준", "demo-password-minjun"},
	{"seoyeon.lee@example.com", "이서연", "demo-password-seoyeon"},
	{"+821055501234", "박지호", "demo-password-jiho"},
	{"alice@example.com", "Alice Walker", "demo-password-alice"},
}

// Seed registers the demo client and customers unless they exist.
func Seed(ctx context.Context, reg *clients.Registry, acc *accounts.Service, issuerURL string) error {
	_, _, err := reg.Add(ctx, clients.Spec{
		ID: ClientID, Name: "custos demo", Public: true,
		RedirectURIs: []string{issuerURL + "/demo/callback"},
		Audiences:    []string{ShopAudience(issuerURL)},
	}, "demo")
	if err != nil && !errors.Is(err, clients.ErrExists) {
		return err
	}
	for _, c := range Customers {
		_, err := acc.Register(ctx, c.LoginID, c.Name, c.Password, "demo")
		if err != nil && !errors.Is(err, accounts.ErrLoginIDTaken) {
			return err
		}
	}
	return nil
}

// ShopPath is where the demo shop is served, behind the guard.
const ShopPath = "/demo/shop"

// ShopAudience is the audience the demo client's tokens name: the demo
// shop behind the guard.
func ShopAudience(issuerURL string) string { return issuerURL + ShopPath }

// Handler serves the demo relying party under /demo/. shop is the demo
// shop behind the guard (nil for none): after sign-in the demo reads the
// customer's own profile through it, and tries another customer's.
func Handler(issuerURL string, shop http.Handler) http.Handler {
	d := &rp{issuer: issuerURL, http: &http.Client{Timeout: 10 * time.Second}, shop: shop}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /demo/{$}", d.home)
	mux.HandleFunc("GET /demo/login", d.login)
	mux.HandleFunc("GET /demo/callback", d.callback)
	return mux
}

type rp struct {
	issuer string
	http   *http.Client
	shop   http.Handler
}

// throughShop sends a GET with the access token to the guarded shop, in
// process, and returns its status and body.
func (d *rp) throughShop(r *http.Request, path, token string) shopCall {
	req, _ := http.NewRequestWithContext(r.Context(), "GET", path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.RemoteAddr, req.RequestURI = r.RemoteAddr, path
	w := &recorder{header: make(http.Header)}
	d.shop.ServeHTTP(w, req)
	var v any
	body := w.body.String()
	if json.Unmarshal(w.body.Bytes(), &v) == nil {
		out, _ := json.MarshalIndent(v, "", "  ")
		body = string(out)
	}
	return shopCall{Path: ShopPath + path, Status: w.status(), Body: body}
}

// recorder keeps a response made in process.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *recorder) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

func (w *recorder) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

type shopCall struct {
	Path   string
	Status int
	Body   string
}

const cookie = "custos_demo_flow"

func random() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (d *rp) home(w http.ResponseWriter, r *http.Request) {
	render(w, http.StatusOK, page{Title: "custos demo", Customers: Customers})
}

// login starts an authorization code flow with PKCE.
func (d *rp) login(w http.ResponseWriter, r *http.Request) {
	state, verifier := random(), random()
	http.SetCookie(w, &http.Cookie{Name: cookie, Value: state + "." + verifier, Path: "/demo/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, MaxAge: 600})
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"client_id": {ClientID}, "redirect_uri": {d.issuer + "/demo/callback"}, "response_type": {"code"},
		"scope": {"openid profile email phone"}, "state": {state}, "nonce": {random()},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	http.Redirect(w, r, d.issuer+issuer.PathAuthorize+"?"+q.Encode(), http.StatusSeeOther)
}

// callback redeems the code and shows what custos issued.
func (d *rp) callback(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(cookie)
	state, verifier, _ := strings.Cut(valueOr(c, err), ".")
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		render(w, http.StatusBadRequest, page{Title: "Sign-in failed", Error: e + ": " + q.Get("error_description")})
		return
	}
	if state == "" || q.Get("state") != state {
		render(w, http.StatusBadRequest, page{Title: "Sign-in failed", Error: "state mismatch: start again from /demo/"})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookie, Path: "/demo/", MaxAge: -1})
	form := url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "client_id": {ClientID},
		"redirect_uri": {d.issuer + "/demo/callback"}, "code_verifier": {verifier}}
	resp, err := d.http.PostForm(d.issuer+issuer.PathToken, form)
	if err != nil {
		render(w, http.StatusBadGateway, page{Title: "Sign-in failed", Error: "token endpoint: " + err.Error()})
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var tok struct {
		AccessToken string `json:"access_token"`
		IDToken     string `json:"id_token"`
		ExpiresIn   int    `json:"expires_in"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || resp.StatusCode != http.StatusOK {
		render(w, http.StatusBadGateway, page{Title: "Sign-in failed", Error: fmt.Sprintf("token endpoint said %d %s: %s", resp.StatusCode, tok.Error, tok.Description)})
		return
	}
	p := page{Title: "Signed in", Signed: true,
		Access: prettyClaims(tok.AccessToken), ID: prettyClaims(tok.IDToken), ExpiresIn: tok.ExpiresIn}
	if d.shop != nil {
		p.Shop = []shopCall{
			d.throughShop(r, "/me/profile", tok.AccessToken),
			d.throughShop(r, "/customers/acc_someone_else/addresses", tok.AccessToken),
		}
	}
	render(w, http.StatusOK, p)
}

func valueOr(c *http.Cookie, err error) string {
	if err != nil {
		return ""
	}
	return c.Value
}

// prettyClaims shows a token's header and claims. The demo shows its own
// fresh tokens to the customer who just signed in; that is its purpose.
func prettyClaims(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	var b strings.Builder
	for _, p := range parts[:2] {
		raw, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil {
			return ""
		}
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return ""
		}
		out, _ := json.MarshalIndent(v, "", "  ")
		b.Write(out)
		b.WriteString("\n")
	}
	return b.String()
}

type page struct {
	Title      string
	Error      string
	Customers  []Customer
	Signed     bool
	Access, ID string
	ExpiresIn  int
	Shop       []shopCall
}

var tmpl = template.Must(template.New("demo").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
 :root { color-scheme: light dark; }
 body { font: 16px/1.5 system-ui, "Noto Sans KR", sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
 pre { overflow-x: auto; padding: 1rem; border-radius: 8px; background: color-mix(in srgb, CanvasText 7%, Canvas); font-size: .85rem; }
 table { border-collapse: collapse; } td, th { padding: .3rem .8rem .3rem 0; text-align: left; }
 a.button { display: inline-block; padding: .6rem 1.2rem; border-radius: 8px; background: #2f5bd3; color: white; text-decoration: none; font-weight: 600; }
 .error { padding: .6rem .8rem; border-radius: 8px; background: color-mix(in srgb, #d33 18%, Canvas); }
</style></head><body>
<h1>{{.Title}}</h1>
{{if .Error}}<p class="error">{{.Error}}</p><p><a href="/demo/">Back to the demo</a></p>{{end}}
{{if .Customers}}
<p>This is a demo application signed in through custos. Sign in as one of these demo customers:</p>
<table><tr><th>Login ID</th><th>Name</th><th>Password</th></tr>
{{range .Customers}}<tr><td>{{.LoginID}}</td><td>{{.Name}}</td><td><code>{{.Password}}</code></td></tr>{{end}}
</table>
<p><a class="button" href="/demo/login">Sign in with custos</a></p>
{{end}}
{{if .Signed}}
<p>custos issued these tokens and recorded a receipt for each before handing them over. The access token lives {{.ExpiresIn}} seconds.</p>
<h2>Access token (header and claims)</h2><pre>{{.Access}}</pre>
<h2>ID token (header and claims)</h2><pre>{{.ID}}</pre>
{{if .Shop}}<h2>The demo shop, behind the guard</h2>
<p>The shop holds synthetic personal data. The guard lets your token read your own profile, and
refuses it another customer's addresses; both reads are in the audit log.</p>
{{range .Shop}}<h3><code>GET {{.Path}}</code>: {{.Status}}</h3><pre>{{.Body}}</pre>{{end}}{{end}}
<p><a href="/demo/">Back to the demo</a></p>
{{end}}
</body></html>`))

func render(w http.ResponseWriter, status int, p page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(status)
	tmpl.Execute(w, p)
}
