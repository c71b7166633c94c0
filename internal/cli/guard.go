package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/node"
	"github.com/custos-dev/custos/internal/spool"
)

// guardFlags are the flags that put a service behind the guard, for
// `custos guard` and (prefixed "guard-") `custos serve`.
type guardFlags struct {
	cmd                                  string
	upstream, policy, listen, audience   *string
	spool                                *string
	spoolMax                             *int64
	flagUpstream, flagPolicy, flagListen string
	flagSpool                            string
}

func (g *guardFlags) register(fs flagSet, cmd, prefix string) {
	g.cmd = cmd
	g.flagUpstream, g.flagPolicy, g.flagListen = prefix+"upstream", prefix+"policy", prefix+"listen"
	g.upstream = fs.String(g.flagUpstream, "", "URL of the service to guard")
	g.policy = fs.String(g.flagPolicy, "", "the guard policy file (docs/spec/guard-policy.md)")
	g.listen = fs.String(g.flagListen, "127.0.0.1:8081", "the guard's listen address")
	g.audience = fs.String(prefix+"audience", "", "the audience access tokens must name (default: the upstream URL)")
	g.flagSpool = prefix + "spool"
	g.spool = fs.String(g.flagSpool, "", "a local directory that keeps access events while the audit log is unavailable (default: none; fail closed)")
	g.spoolMax = fs.Int64(prefix+"spool-max-bytes", spool.DefaultMaxBytes, "bytes of access events the spool holds at most; beyond it the guard fails closed")
}

// flagSet is the part of *flag.FlagSet guardFlags uses.
type flagSet interface {
	String(name, value, usage string) *string
	Int64(name string, value int64, usage string) *int64
}

func (g *guardFlags) set() bool { return *g.upstream != "" || *g.policy != "" }

// load checks the flags and reads the policy.
func (g *guardFlags) load() (*url.URL, *guard.Policy, error) {
	up, err := url.Parse(*g.upstream)
	if *g.upstream == "" || err != nil || (up.Scheme != "http" && up.Scheme != "https") || up.Host == "" {
		return nil, nil, usagef("custos %s: --%s: want an http or https URL, got %q", g.cmd, g.flagUpstream, *g.upstream)
	}
	if *g.policy == "" {
		return nil, nil, usagef("custos %s: --%s is required", g.cmd, g.flagPolicy)
	}
	if *g.audience == "" {
		*g.audience = up.String()
	}
	f, err := os.Open(*g.policy)
	if err != nil {
		return nil, nil, fmt.Errorf("guard policy: %w", err)
	}
	defer f.Close()
	p, err := guard.ParsePolicy(*g.policy, f)
	return up, p, err
}

// openSpool opens the spool --spool names, or returns nil without one.
func (g *guardFlags) openSpool(w io.Writer) (*spool.Spool, error) {
	if *g.spool == "" {
		return nil, nil
	}
	if *g.spoolMax <= 0 {
		return nil, usagef("custos %s: --%s-max-bytes must be positive", g.cmd, g.flagSpool)
	}
	sp, st, err := spool.Open(*g.spool, *g.spoolMax)
	if err != nil {
		return nil, err
	}
	if st.Dropped > 0 {
		fmt.Fprintf(w, "spool %s: cut off %d bytes a crash left half-written (no guard answered on them)\n", *g.spool, st.Dropped)
	}
	if st.Events > 0 {
		fmt.Fprintf(w, "spool %s holds %d access events; they go into the audit log as soon as it takes them\n", *g.spool, st.Events)
	}
	return sp, nil
}

// start opens the spool, if one is named, and returns the guarded reverse
// proxy to up with it. The caller closes the spool.
func (g *guardFlags) start(ctx context.Context, n *node.Node, up *url.URL, p *guard.Policy, log *slog.Logger, w io.Writer) (http.Handler, *spool.Spool, error) {
	sp, err := g.openSpool(w)
	if err != nil {
		return nil, nil, err
	}
	h, err := g.handler(ctx, n, up, p, sp, log)
	if err != nil && sp != nil {
		sp.Close()
	}
	return h, sp, err
}

// handler is the guarded reverse proxy to up.
func (g *guardFlags) handler(ctx context.Context, n *node.Node, up *url.URL, p *guard.Policy, sp *spool.Spool, log *slog.Logger) (http.Handler, error) {
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
	return n.Guard(ctx, node.GuardConfig{Policy: p, Audience: *g.audience, Upstream: up.Redacted(), Actor: actor(), Spool: sp}, proxy)
}

func (g *guardFlags) describe(w io.Writer, ln net.Listener, up *url.URL, p *guard.Policy, issuer string) {
	fmt.Fprintf(w, "custos guard on %s: %d routes of %s, tokens from %s for audience %s\n",
		ln.Addr(), len(p.Routes), up.Redacted(), issuer, *g.audience)
	for _, rt := range p.Routes {
		fmt.Fprintf(w, "  %-40s %s\n", rt.Pattern, rt.Mode)
	}
}

// guardCmd runs the guard as a reverse proxy in front of a service.
func guardCmd(ctx context.Context, args []string, stdio IO) error {
	fs := flags("guard", stdio)
	var nf nodeFlags
	nf.register(fs)
	var gf guardFlags
	gf.register(fs, "guard", "")
	iss := fs.String("issuer", "", "custos's issuer URL, as in the tokens (default: http://"+node.DefaultAddr+")")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("custos guard: unexpected arguments %q", fs.Args())
	}
	up, policy, err := gf.load()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stdio.Stderr, nil))
	ln, err := net.Listen("tcp", *gf.listen)
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
	h, sp, err := gf.start(ctx, n, up, policy, log, stdio.Stdout)
	if err != nil {
		return err
	}
	if sp != nil {
		defer sp.Close()
	}
	gf.describe(stdio.Stdout, ln, up, policy, n.Config().Issuer)
	return n.ServeGuard(ctx, ln, h, sp)
}
