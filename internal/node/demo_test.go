package node_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/custos-dev/custos/internal/accounts"
	"github.com/custos-dev/custos/internal/demo"
	"github.com/custos-dev/custos/internal/node"
)

// With --demo, a demo customer signs in and reads their own profile from
// the demo shop through the guard, and is refused another customer's
// addresses.
func TestDemoShopBehindTheGuard(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.Config{DataDir: t.TempDir(), Addr: ln.Addr().String(), Demo: true}
	cfg.Accounts = accounts.Config{Params: accounts.DefaultParams()}
	n, err := node.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, ln) }()
	defer func() { cancel(); <-done; n.Close() }()
	base := n.Config().Issuer
	if err := demo.Seed(t.Context(), n.Clients, n.Accounts, base); err != nil {
		t.Fatal(err)
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(base + "/demo/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	flow := resp.Cookies()
	c := demo.Customers[0]
	callback := browserSignIn(t, resp.Header.Get("Location"), c.LoginID, c.Password)
	req, _ := http.NewRequest("GET", callback.String(), nil)
	for _, ck := range flow {
		req.AddCookie(ck)
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		"<code>GET /demo/shop/me/profile</code>: 200",
		"&#34;email&#34;",
		"<code>GET /demo/shop/customers/acc_someone_else/addresses</code>: 403",
		"subject_mismatch",
	} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the signed-in page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("page:\n%s", page)
	}
}
