// Package cli is custos's command-line interface. Run is the whole program:
// main only calls it, so every command can be tested in-process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/user"
	"slices"
	"strings"
	"time"

	"github.com/custos-dev/custos/internal/node"
)

// UsageError is a command line custos cannot understand. It exits with 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error { return &UsageError{fmt.Sprintf(format, args...)} }

// ExitCode maps Run's error to a process exit code: 0 for success, 2 for
// usage errors, 1 for anything else.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	default:
		if _, ok := errors.AsType[*UsageError](err); ok {
			return 2
		}
		return 1
	}
}

// IO is where a command reads and writes.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

const usage = `custos: customer authentication and personal-data access

Usage:
  custos serve [--demo] [--data DIR] [--addr HOST:PORT] [--issuer URL] [--witness URL=VKEY]...
               [--guard-upstream URL --guard-policy FILE [--guard-listen HOST:PORT] [--guard-audience AUD]
                [--guard-spool DIR]] [--rules FILE] [--alert-webhook NAME=URL --alert-webhook-secret-env VAR]
  custos keys list|rotate|revoke|import|offboard
  custos clients add|list|remove
  custos accounts add|disable|list
  custos token inspect [TOKEN]
  custos audit verify|prove|check-proof|query|hold|retention|prune
  custos alerts list|show|ack|rules|blocks|unblock
  custos simulate breach [--customers N] [--json] [--url URL --data DIR]
  custos ssf add|list|remove
  custos witness [--data DIR] [--addr HOST:PORT] [--name NAME] --log VKEY...
  custos witness key|checkpoint
  custos guard --upstream URL --policy FILE [--listen HOST:PORT] [--audience AUD] [--issuer URL]
               [--spool DIR [--spool-max-bytes N]]
  custos demo-shop [--seed N] [--listen HOST:PORT] | --export N | --policy
  custos version

Run "custos COMMAND -h" for a command's flags.
`

// Version is set at build time with -ldflags "-X .../cli.Version=...".
var Version = "dev"

// Run runs the custos command line args (without the program name).
func Run(ctx context.Context, args []string, stdio IO) error {
	if len(args) == 0 {
		fmt.Fprint(stdio.Stderr, usage)
		return usagef("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, stdio)
	case "keys":
		return keysCmd(ctx, rest, stdio)
	case "clients":
		return clientsCmd(ctx, rest, stdio)
	case "accounts":
		return accountsCmd(ctx, rest, stdio)
	case "token":
		return tokenCmd(ctx, rest, stdio)
	case "audit":
		return auditCmd(ctx, rest, stdio)
	case "witness":
		return witnessCmd(ctx, rest, stdio)
	case "guard":
		return guardCmd(ctx, rest, stdio)
	case "alerts":
		return alertsCmd(ctx, rest, stdio)
	case "simulate":
		return simulateCmd(ctx, rest, stdio)
	case "ssf":
		return ssfCmd(ctx, rest, stdio)
	case "demo-shop":
		return demoShopCmd(ctx, rest, stdio)
	case "version":
		fmt.Fprintln(stdio.Stdout, "custos", Version)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdio.Stdout, usage)
		return nil
	default:
		fmt.Fprint(stdio.Stderr, usage)
		return usagef("unknown command %q", cmd)
	}
}

// subcommand dispatches "custos GROUP SUB ...".
func subcommand(ctx context.Context, group string, args []string, stdio IO, subs map[string]func(context.Context, []string, IO) error) error {
	names := make([]string, 0, len(subs))
	for n := range subs {
		names = append(names, n)
	}
	if len(args) == 0 {
		return usagef("custos %s: give a subcommand: %s", group, strings.Join(sorted(names), ", "))
	}
	fn, ok := subs[args[0]]
	if !ok {
		return usagef("custos %s: unknown subcommand %q (want %s)", group, args[0], strings.Join(sorted(names), ", "))
	}
	return fn(ctx, args[1:], stdio)
}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}

// flags is a flag set that reports errors as usage errors.
func flags(name string, stdio IO) *flag.FlagSet {
	fs := flag.NewFlagSet("custos "+name, flag.ContinueOnError)
	fs.SetOutput(stdio.Stderr)
	return fs
}

// parse parses args into fs, reporting errors as usage errors.
//
// Flags may also follow positional arguments, as the documentation writes
// them ("custos keys revoke KID --reason x"); a "--" ends the flags, and
// everything after it is positional. The positional arguments are left in
// fs.Args.
func parse(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		// A key id is a base64url thumbprint, and one in 32 begins with a
		// dash: it is an argument, never a flag.
		if i := slices.IndexFunc(args, dashKeyID); i >= 0 && !slices.Contains(args[:i], "--") {
			if err := parse(fs, args[:i]); err != nil {
				return err
			}
			positional = append(append(positional, fs.Args()...), args[i])
			args = args[i+1:]
			continue
		}
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return &UsageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, positional...))
}

// dashKeyID reports whether arg has the shape of a key id (an RFC 7638
// SHA-256 thumbprint in unpadded base64url, 43 characters) that begins
// with a dash.
func dashKeyID(arg string) bool {
	return len(arg) == 43 && strings.HasPrefix(arg, "-") && !strings.ContainsFunc(arg, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	})
}

// nodeFlags are the flags every command that opens the data directory takes.
type nodeFlags struct {
	data, rootKeyFile, rootKeyEnv string
	keyAlg                        string
	keyPeriod                     time.Duration
	auditOrigin                   string
}

func (f *nodeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.data, "data", node.DefaultDataDir, "data directory")
	fs.StringVar(&f.rootKeyFile, "root-key-file", "", "root key file (default: DATA/root.key, created on first start)")
	fs.StringVar(&f.rootKeyEnv, "root-key-env", "", "name of an environment variable holding the base64 root key")
	fs.StringVar(&f.keyAlg, "key-algorithm", "EdDSA", "algorithm of new signing keys: EdDSA or ES256")
	fs.DurationVar(&f.keyPeriod, "key-active-period", 24*time.Hour, "how long a signing key signs before rotation")
	fs.StringVar(&f.auditOrigin, "audit-origin", "", "name of the audit log, fixed when the data directory is first used (default: ISSUER-HOST/audit/RANDOM)")
}

func (f *nodeFlags) config() node.Config {
	cfg := node.Config{DataDir: f.data, RootKeyFile: f.rootKeyFile, RootKeyEnv: f.rootKeyEnv, AuditOrigin: f.auditOrigin}
	cfg.Keys.Algorithm = f.keyAlg
	cfg.Keys.ActivePeriod = f.keyPeriod
	return cfg
}

// open opens the node for an administrative command.
func (f *nodeFlags) open(ctx context.Context, stdio IO) (*node.Node, error) {
	cfg := f.config()
	cfg.Logger = slog.New(slog.NewTextHandler(stdio.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return node.Open(ctx, cfg)
}

// actor names the operator running an administrative command.
func actor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli"
}
