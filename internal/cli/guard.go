package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/node"
)

// guardCmd runs the guard as a reverse proxy in front of a service.
func guardCmd(ctx context.Context, args []string, stdio IO) error {
	fs := flags("guard", stdio)
	var nf nodeFlags
	nf.register(fs)
	upstream := fs.String("upstream", "", "URL of the service to guard (required)")
	policyFile := fs.String("policy", "", "the guard policy file (required; docs/spec/guard-policy.md)")
	listen := fs.String("listen", "127.0.0.1:8081", "listen address")
	audience := fs.String("audience", "", "the audience access tokens must name (default: the upstream URL)")
	iss := fs.String("issuer", "", "custos's issuer URL, as in the tokens (default: http://"+node.DefaultAddr+")")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("custos guard: unexpected arguments %q", fs.Args())
	}
	up, err := url.Parse(*upstream)
	if *upstream == "" || err != nil || (up.Scheme != "http" && up.Scheme != "https") || up.Host == "" {
		return usagef("custos guard: --upstream: want an http or https URL, got %q", *upstream)
	}
	if *policyFile == "" {
		return usagef("custos guard: --policy is required")
	}
	if *audience == "" {
		*audience = up.String()
	}
	f, err := os.Open(*policyFile)
	if err != nil {
		return fmt.Errorf("guard policy: %w", err)
	}
	policy, err := guard.ParsePolicy(*policyFile, f)
	f.Close()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stdio.Stderr, nil))
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()

	cfg := nf.config()
	cfg.Issuer, cfg.Logger = *iss, log
	n, err := node.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if !errors.Is(err, context.Canceled) {
				log.Warn("guard: upstream failed", "upstream", up.Redacted(), "err", err)
			}
			http.Error(w, "upstream unavailable", http.StatusBadGateway)
		},
	}
	h, err := n.Guard(policy, *audience, proxy)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdio.Stdout, "custos guard on %s: %d routes of %s, tokens from %s for audience %s\n",
		ln.Addr(), len(policy.Routes), up.Redacted(), n.Config().Issuer, *audience)
	for _, rt := range policy.Routes {
		fmt.Fprintf(stdio.Stdout, "  %-40s %s\n", rt.Pattern, rt.Mode)
	}
	return n.ServeGuard(ctx, ln, h)
}
