package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"time"

	"github.com/custos-dev/custos/internal/simulate"
)

func simulateCmd(ctx context.Context, args []string, stdio IO) error {
	return subcommand(ctx, "simulate", args, stdio, map[string]func(context.Context, []string, IO) error{
		"breach": simulateBreach,
	})
}

// errDrillFailed: the drill ran, and custos did not stop or see the attack.
var errDrillFailed = errors.New("the drill found custos wanting")

func simulateBreach(ctx context.Context, args []string, stdio IO) error {
	fs := flags("simulate breach", stdio)
	var cfg simulate.BreachConfig
	fs.IntVar(&cfg.Customers, "customers", 10_000, "synthetic customers to seed")
	fs.IntVar(&cfg.Active, "active", 0, "customers with ordinary traffic in each phase (default: min(customers, 200))")
	fs.IntVar(&cfg.Targets, "targets", 0, "customers the attacker reads in each phase (default: one in a hundred, at least 50)")
	fs.IntVar(&cfg.AttackIPs, "attack-ips", 5, "IPs the attacker rotates through")
	fs.IntVar(&cfg.Workers, "workers", 16, "ordinary sessions at once")
	fs.StringVar(&cfg.Dir, "data", "", "data directory for the drill's custos (default: a temporary one, removed after); never a real one; with --url, the running custos's")
	fs.StringVar(&cfg.URL, "url", "", "drill against the custos running at this issuer URL (on loopback, with --data its data directory) instead of a fresh one")
	fs.StringVar(&cfg.RootKeyFile, "root-key-file", "", "with --url: the running custos's root key file (default: DATA/root.key)")
	fs.StringVar(&cfg.RootKeyEnv, "root-key-env", "", "with --url: the environment variable holding the running custos's root key")
	fs.StringVar(&cfg.Keys.Algorithm, "key-algorithm", "EdDSA", "with --url: as the running custos's serve")
	fs.DurationVar(&cfg.Keys.ActivePeriod, "key-active-period", 24*time.Hour, "with --url: as the running custos's serve")
	asJSON := fs.Bool("json", false, "print the report as JSON (the timeline goes to standard error)")
	verbose := fs.Bool("verbose", false, "show custos's own log on standard error")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("custos simulate breach: takes no arguments")
	}
	if cfg.Customers < 1 || cfg.Active < 0 || cfg.Targets < 0 || cfg.AttackIPs < 1 || cfg.Workers < 1 {
		return usagef("custos simulate breach: --customers, --attack-ips and --workers must be positive; --active and --targets positive or left out")
	}
	switch {
	case cfg.URL != "" && cfg.Dir == "":
		return usagef("custos simulate breach: --url needs --data, the running custos's data directory: the drill seeds its customers and legacy key through it")
	case cfg.URL == "" && (cfg.RootKeyFile != "" || cfg.RootKeyEnv != ""):
		return usagef("custos simulate breach: --root-key-file and --root-key-env are for --url")
	case cfg.URL == "" && cfg.Dir != "":
		if entries, err := os.ReadDir(cfg.Dir); err == nil && len(entries) > 0 {
			return usagef("custos simulate breach: --data %s is not empty: the drill seeds its own customers and keys, so it wants a new directory (or give --url, the custos that uses it)", cfg.Dir)
		}
	}
	cfg.Progress = stdio.Stdout
	if *asJSON {
		cfg.Progress = stdio.Stderr
	}
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(stdio.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	fmt.Fprintf(cfg.Progress, "breach drill: %d customers; an insider with a copy of a retired legacy signing key forges tokens\n", cfg.Customers)
	if cfg.URL != "" {
		fmt.Fprintf(cfg.Progress, "against the custos at %s: it seeds customers, a client and a legacy key there, and revokes the key and removes the client when done\n", cfg.URL)
	}
	r, err := simulate.Breach(ctx, cfg)
	if err != nil {
		return fmt.Errorf("simulate breach: %w", err)
	}
	failed := verdict(r)
	if *asJSON {
		if err := writeJSONOut(stdio.Stdout, r); err != nil {
			return err
		}
	} else {
		summary(stdio.Stdout, r, failed)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %v", errDrillFailed, failed)
	}
	return nil
}

// verdict lists what the drill says custos got wrong.
func verdict(r *simulate.Report) []string {
	var failed []string
	if r.Enforce.ForgedAccepted > 0 {
		failed = append(failed, fmt.Sprintf("enforce mode let %d forged requests through", r.Enforce.ForgedAccepted))
	}
	if s := r.Monitor.SecondsToFirstAlert; s == nil || *s > 5 {
		failed = append(failed, "no alert within 5 s of the first forged request in monitor mode")
	}
	if !r.Monitor.ScopeExact {
		failed = append(failed, "the audit log's scope differs from what the attacker got")
	}
	if r.Normal.FalseAlerts > 0 {
		failed = append(failed, fmt.Sprintf("%d alerts on ordinary customers' traffic", r.Normal.FalseAlerts))
	}
	return failed
}

func summary(w io.Writer, r *simulate.Report, failed []string) {
	fmt.Fprintf(w, "\n%d customers, %d ordinary requests, %d forged requests, %.1f s\n", r.Customers, r.NormalRequests, r.ForgedRequests, r.Seconds)
	fmt.Fprintf(w, "enforce: %d forged requests accepted, %d records exposed; detection blocked %d addresses on its own\n",
		r.Enforce.ForgedAccepted, r.Enforce.RecordsExposed, r.Enforce.Responses["block_ip"])
	first := "none"
	if s := r.Monitor.SecondsToFirstAlert; s != nil {
		first = fmt.Sprintf("%.3f s after the first forged request", *s)
	}
	fmt.Fprintf(w, "monitor: %d forged requests forwarded, %d customers exposed (scope from the log exact: %v), first alert %s\n",
		r.Monitor.ForgedForwarded, r.Monitor.ExposedSubjects, r.Monitor.ScopeExact, first)
	rules := make([]string, 0, len(r.Monitor.Alerts))
	for rule := range r.Monitor.Alerts {
		rules = append(rules, rule)
	}
	sort.Strings(rules)
	for _, rule := range rules {
		fmt.Fprintf(w, "  alert %-32s %d events\n", rule, r.Monitor.Alerts[rule])
	}
	fmt.Fprintf(w, "ordinary customers: %d sessions, %d failures, %d false alerts\n", r.Normal.Sessions, r.Normal.Failures, r.Normal.FalseAlerts)
	if len(failed) == 0 {
		fmt.Fprintln(w, "verdict: the attack was refused in enforce mode and seen, with its exact scope, in monitor mode")
		return
	}
	for _, f := range failed {
		fmt.Fprintln(w, "FAILED:", f)
	}
}
