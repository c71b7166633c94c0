package simulate

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/custos-dev/custos/internal/issuer"
)

// client is one party on the network: its own source address on loopback
// (127.0.0.0/8 is all local on Linux), its own connections and cookies.
type client struct {
	ip   string
	http *http.Client
}

func newClient(ip string) *client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	jar, _ := cookiejar.New(nil)
	return &client{ip: ip, http: &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext: d.DialContext, MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute,
		},
		// The sign-in redirects to the client's redirect URI, which
		// is read, not visited.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (c *client) close() { c.http.CloseIdleConnections() }

// customerIP is active customer i's own address: 127.1.0.1 upwards.
func customerIP(i int) string {
	n := i + 1
	return fmt.Sprintf("127.%d.%d.%d", 1+n>>16, n>>8&0xff, n&0xff)
}

// isCustomerIP reports whether ip is one customerIP gives.
func isCustomerIP(ip string) bool { return strings.HasPrefix(ip, "127.1.") }

// attackerIP is the attacker's address number i. Against a running
// custos, each run's attacker comes from a subnet of its own (attackNet),
// so that one run's blocks do not meet the next.
func (d *drill) attackerIP(i int) string { return fmt.Sprintf("127.66.%d.%d", d.attackNet, 1+i) }

// isAttacker reports whether ip is one of this run's attacker's.
func (d *drill) isAttacker(ip string) bool {
	for i := range d.cfg.AttackIPs {
		if ip == d.attackerIP(i) {
			return true
		}
	}
	return false
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// tokens is a token response.
type tokens struct {
	Access  string `json:"access_token"`
	Refresh string `json:"refresh_token"`
}

// errBadCredentials is a sign-in the login page refused.
var errBadCredentials = errors.New("sign-in refused")

// signIn runs the authorization code flow with PKCE through the hosted
// login page, as a browser and an app would, and returns the tokens.
func (c *client) signIn(ctx context.Context, base, clientID, redirect, loginID, password string) (tokens, int, error) {
	requests := 0
	verifier := rand.Text() + rand.Text()
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect}, "scope": {"openid profile"},
		"state": {rand.Text()}, "nonce": {rand.Text()},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	authURL := base + issuer.PathAuthorize + "?" + q.Encode()
	page, status, err := c.do(ctx, "GET", authURL, nil, nil)
	requests++
	if err != nil || status != http.StatusOK {
		return tokens{}, requests, fmt.Errorf("login page: %d %v", status, err)
	}
	form := url.Values{"login_id": {loginID}, "password": {password}}
	for _, m := range hiddenInput.FindAllStringSubmatch(string(page), -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", base+issuer.PathAuthorize, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	requests++
	if err != nil {
		return tokens{}, requests, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return tokens{}, requests, fmt.Errorf("%w: %d", errBadCredentials, resp.StatusCode)
	}
	loc, err := resp.Location()
	if err != nil || loc.Query().Get("code") == "" {
		return tokens{}, requests, fmt.Errorf("sign-in redirected without a code: %v", err)
	}
	tok, err := c.token(ctx, base, url.Values{
		"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {redirect},
		"client_id": {clientID}, "code_verifier": {verifier},
	})
	return tok, requests + 1, err
}

// refresh uses a refresh token.
func (c *client) refresh(ctx context.Context, base, clientID, refresh string) (tokens, error) {
	return c.token(ctx, base, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {clientID}})
}

func (c *client) token(ctx context.Context, base string, form url.Values) (tokens, error) {
	body, status, err := c.do(ctx, "POST", base+issuer.PathToken, strings.NewReader(form.Encode()),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	if err != nil || status != http.StatusOK {
		return tokens{}, fmt.Errorf("token endpoint: %d %v %.200s", status, err, body)
	}
	var t tokens
	if err := json.Unmarshal(body, &t); err != nil || t.Access == "" {
		return tokens{}, fmt.Errorf("token response: %v", err)
	}
	return t, nil
}

// read GETs a guarded route with a bearer token.
func (c *client) read(ctx context.Context, u, token, userAgent string) (int, []byte, error) {
	body, status, err := c.do(ctx, "GET", u, nil, http.Header{"Authorization": {"Bearer " + token}, "User-Agent": {userAgent}})
	return status, body, err
}

func (c *client) do(ctx context.Context, method, u string, body io.Reader, h http.Header) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, 0, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return b, resp.StatusCode, err
}
