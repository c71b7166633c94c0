package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"runtime/debug"

	"golang.org/x/sync/errgroup"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/demo"
	"github.com/custos-dev/custos/internal/detect"
	"github.com/custos-dev/custos/internal/issuer"
	"github.com/custos-dev/custos/internal/node"
)

func serve(ctx context.Context, args []string, stdio IO) error {
	fs := flags("serve", stdio)
	var nf nodeFlags
	nf.register(fs)
	addr := fs.String("addr", node.DefaultAddr, "listen address")
	iss := fs.String("issuer", "", "public issuer URL (default: http://ADDR)")
	demo := fs.Bool("demo", false, "seed a demo client and demo customers")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	var witnesses witnessList
	fs.Var(&witnesses, "witness", "a witness to send audit-log checkpoints to, as URL=VKEY (repeatable)")
	var gf guardFlags
	gf.register(fs, "serve", "guard-")
	rulesFile := fs.String("rules", "", "detection rules file (default: the built-in rules; see custos alerts rules)")
	var hooks webhookList
	fs.Var(&hooks, "alert-webhook", "a webhook to deliver alerts to, as NAME=URL (repeatable; https, or http to loopback)")
	hookSecretEnv := fs.String("alert-webhook-secret-env", "", "environment variable holding the secret that signs alert deliveries (at least 32 bytes)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if hooks.err != nil {
		return usagef("custos serve: --alert-webhook: %v", hooks.err)
	}
	if err := hooks.signWith(*hookSecretEnv); err != nil {
		return usagef("custos serve: %v", err)
	}
	rules := detect.DefaultRules()
	if *rulesFile != "" {
		var err error
		if rules, err = loadRules(*rulesFile); err != nil {
			return err
		}
	}
	var (
		up     *url.URL
		policy *guard.Policy
	)
	if gf.set() {
		var err error
		if up, policy, err = gf.load(); err != nil {
			return err
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usagef("custos serve: --log-level: %v", err)
	}
	if witnesses.err != nil {
		return usagef("custos serve: --witness: %v", witnesses.err)
	}
	log := slog.New(slog.NewTextHandler(stdio.Stderr, &slog.HandlerOptions{Level: level}))

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	cfg := nf.config()
	cfg.Addr, cfg.Issuer, cfg.Logger, cfg.Demo = ln.Addr().String(), *iss, log, *demo
	cfg.Witnesses = witnesses.remotes
	n, err := node.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	base := n.Config().Issuer

	fmt.Fprintf(stdio.Stdout, "custos is serving %s (data in %s)\n\n", base, n.Config().DataDir)
	fmt.Fprintf(stdio.Stdout, "  discovery      %s%s\n", base, issuer.PathDiscovery)
	fmt.Fprintf(stdio.Stdout, "  JWKS           %s%s\n", base, issuer.PathJWKS)
	fmt.Fprintf(stdio.Stdout, "  audit log      %s%s\n", base, node.AuditPath)
	fmt.Fprintf(stdio.Stdout, "  audit log key  %s\n", n.AuditVerifierKey)
	for _, w := range witnesses.remotes {
		fmt.Fprintf(stdio.Stdout, "  witness        %s\n", witnessURL(w.URL))
	}
	fmt.Fprintf(stdio.Stdout, "  detection      %d rules; custos alerts list\n", len(rules.Rules))
	fmt.Fprintf(stdio.Stdout, "  sign-in        %s%s\n\n", base, issuer.PathAuthorize)
	if *demo {
		if err := seedDemo(ctx, n, stdio); err != nil {
			return fmt.Errorf("seeding the demo: %w", err)
		}
	} else {
		fmt.Fprintln(stdio.Stdout, "To sign in, register a client and a customer first:")
		fmt.Fprintln(stdio.Stdout, "  custos clients add --id my-app --public --redirect-uri http://127.0.0.1:3000/callback")
		fmt.Fprintln(stdio.Stdout, "  echo 'a long password' | custos accounts add --login you@example.com --name 'Your Name'")
		fmt.Fprintln(stdio.Stdout, "or run `custos serve --demo` for a ready-made demo.")
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.Detect(ctx, rules, hooks.hooks) })
	if policy == nil {
		log.Info("serving", "issuer", base, "addr", ln.Addr().String())
		g.Go(func() error { return n.Serve(ctx, ln) })
		return g.Wait()
	}
	gln, err := net.Listen("tcp", *gf.listen)
	if err != nil {
		return fmt.Errorf("guard: listen: %w", err)
	}
	defer gln.Close()
	h, sp, err := gf.start(ctx, n, up, policy, log, stdio.Stdout)
	if err != nil {
		return err
	}
	if sp != nil {
		defer sp.Close()
	}
	gf.describe(stdio.Stdout, gln, up, policy, base)
	log.Info("serving", "issuer", base, "addr", ln.Addr().String(), "guard", gln.Addr().String())
	g.Go(func() error { return n.Serve(ctx, ln) })
	g.Go(func() error { return node.ServeHTTP(ctx, gln, h, log) })
	if sp != nil {
		g.Go(func() error { n.RunSpool(ctx, sp); return nil })
	}
	return g.Wait()
}

func seedDemo(ctx context.Context, n *node.Node, stdio IO) error {
	if err := demo.Seed(ctx, n.Clients, n.Accounts, n.Config().Issuer); err != nil {
		return err
	}
	// Hashing the demo passwords took 19 MiB per Argon2id hash; give that
	// memory back now rather than at the runtime's next forced collection.
	debug.FreeOSMemory()
	fmt.Fprintf(stdio.Stdout, "Demo: open %s/demo/ and sign in as a demo customer:\n", n.Config().Issuer)
	for _, c := range demo.Customers {
		fmt.Fprintf(stdio.Stdout, "  %-26s %s\n", c.LoginID, c.Password)
	}
	fmt.Fprintln(stdio.Stdout)
	return nil
}
