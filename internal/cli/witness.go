package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/keys"
	"github.com/custos-dev/custos/internal/node"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/store/sqlite"
	"github.com/custos-dev/custos/internal/witness"
)

// Witness defaults.
const (
	defaultWitnessDir  = "custos-witness"
	defaultWitnessAddr = "127.0.0.1:8090"
)

// witnessCmd is "custos witness": run a standalone witness, or read its key
// or the checkpoint it holds for a log.
func witnessCmd(ctx context.Context, args []string, stdio IO) error {
	if len(args) > 0 {
		switch args[0] {
		case "key":
			return witnessKey(ctx, args[1:], stdio)
		case "checkpoint":
			return witnessCheckpoint(ctx, args[1:], stdio)
		}
	}
	return witnessServe(ctx, args, stdio)
}

func witnessServe(ctx context.Context, args []string, stdio IO) error {
	fs := flags("witness", stdio)
	data := fs.String("data", defaultWitnessDir, "the witness's data directory (its state and its sealed key)")
	addr := fs.String("addr", defaultWitnessAddr, "listen address")
	name := fs.String("name", "", "the witness's key name, fixed when it is created (default: HOST/witness/RANDOM)")
	var logKeys stringList
	fs.Var(&logKeys, "log", "verifier key of a log to witness, as `custos serve` prints it (repeatable)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("custos witness: unexpected argument %q (subcommands: key, checkpoint)", fs.Arg(0))
	}
	if len(logKeys) == 0 {
		return usagef("custos witness: give at least one --log VKEY: the verifier key of a log to witness")
	}
	var logs []witness.Log
	for _, k := range logKeys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return usagef("custos witness: --log %q is not a log's note verifier key", k)
		}
		logs = append(logs, witness.Log{Verifier: v})
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usagef("custos witness: --log-level: %v", err)
	}
	log := slog.New(slog.NewTextHandler(stdio.Stderr, &slog.HandlerOptions{Level: level}))

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	ws, err := openWitness(ctx, *data, *name, true, log)
	if err != nil {
		return err
	}
	defer ws.st.Close()
	w, err := witness.New(ws.st, ws.key.Signer(), witness.Config{Name: ws.name, Logs: logs, Logger: log})
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(stdio.Stdout, "custos witness is serving %s/add-checkpoint (data in %s)\n\n", base, *data)
	fmt.Fprintf(stdio.Stdout, "  verifier key   %s\n", w.VerifierKey())
	for _, l := range logs {
		fmt.Fprintf(stdio.Stdout, "  witnessing     %s\n", l.Verifier.Name())
	}
	fmt.Fprintln(stdio.Stdout, "\nGive the log's operator this witness's URL and verifier key:")
	fmt.Fprintf(stdio.Stdout, "  custos serve --witness %s=%s\n", base, w.VerifierKey())
	log.Info("witnessing", "addr", ln.Addr().String(), "name", ws.name)

	return node.ServeHTTP(ctx, ln, w.Handler(), log)
}

func witnessKey(ctx context.Context, args []string, stdio IO) error {
	fs := flags("witness key", stdio)
	data := fs.String("data", defaultWitnessDir, "the witness's data directory")
	name := fs.String("name", "", "the witness's key name, if the witness is created now (default: HOST/witness/RANDOM)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("custos witness key: unexpected argument %q", fs.Arg(0))
	}
	log := slog.New(slog.NewTextHandler(stdio.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ws, err := openWitness(ctx, *data, *name, true, log)
	if err != nil {
		return err
	}
	defer ws.st.Close()
	fmt.Fprintln(stdio.Stdout, auditlog.CosignatureVerifierKey(ws.name, ws.key.PublicKey()))
	return nil
}

func witnessCheckpoint(ctx context.Context, args []string, stdio IO) error {
	fs := flags("witness checkpoint", stdio)
	data := fs.String("data", defaultWitnessDir, "the witness's data directory")
	origin := fs.String("origin", "", "the log's origin (its verifier key's name)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("custos witness checkpoint: unexpected argument %q", fs.Arg(0))
	}
	if *origin == "" {
		return usagef("custos witness checkpoint: give --origin ORIGIN, the log's name")
	}
	log := slog.New(slog.NewTextHandler(stdio.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ws, err := openWitness(ctx, *data, "", false, log)
	if err != nil {
		return err
	}
	defer ws.st.Close()
	w, err := witness.New(ws.st, ws.key.Signer(), witness.Config{Name: ws.name, Logger: log})
	if err != nil {
		return err
	}
	cp, err := w.Latest(ctx, *origin)
	if errors.Is(err, witness.ErrNoCheckpoint) {
		return fmt.Errorf("the witness in %s has not cosigned a checkpoint of %q", *data, *origin)
	}
	if err != nil {
		return err
	}
	_, err = stdio.Stdout.Write(cp)
	return err
}

// witnessState is an open witness data directory.
type witnessState struct {
	st   *sqlite.Store
	name string
	key  *keys.NoteKey
}

// openWitness opens the witness in dir: its SQLite state and its note key,
// sealed under the root key in dir. With create, a new witness is set up
// (named name, or a default name) if dir holds none; a witness keeps the
// name it was created with. Without create, dir must hold a witness.
func openWitness(ctx context.Context, dir, name string, create bool, log *slog.Logger) (*witnessState, error) {
	if name != "" && !validKeyName(name) {
		return nil, usagef("--name %q is not a key name (no spaces or plus signs)", name)
	}
	if !create {
		if _, err := os.Stat(filepath.Join(dir, sqlite.FileName)); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no witness in %s (start one with `custos witness --data %s --log VKEY`)", dir, dir)
		}
	}
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("witness data directory: %w", err)
		}
	}
	sealer, err := keys.OpenFileSealer(filepath.Join(dir, node.RootKeyFile), create)
	if err != nil {
		return nil, fmt.Errorf("witness root key: %w", err)
	}
	st, err := sqlite.Open(ctx, dir)
	if err != nil {
		return nil, err
	}
	ws := &witnessState{st: st}
	fail := func(err error) (*witnessState, error) {
		st.Close()
		return nil, err
	}
	if create {
		want := name
		if want == "" {
			if want, err = defaultWitnessName(); err != nil {
				return fail(err)
			}
		}
		if ws.name, err = st.InitWitness(ctx, want); err != nil {
			return fail(err)
		}
		if name != "" && ws.name != name {
			return fail(fmt.Errorf("the witness in %s is named %q, not %q (a witness keeps its name)", dir, ws.name, name))
		}
	} else {
		ws.name, err = st.WitnessName(ctx)
		if errors.Is(err, store.ErrNotFound) {
			return fail(fmt.Errorf("no witness in %s", dir))
		}
		if err != nil {
			return fail(err)
		}
		if _, err := st.NoteKey(ctx, ws.name); err != nil {
			return fail(fmt.Errorf("the witness in %s has no key: %w", dir, err))
		}
	}
	// The key's creation has no audit log to go to: it is logged.
	sink := event.SinkFunc(func(_ context.Context, e event.Event) error {
		log.Info("created the witness key", "name", e.Fields["name"])
		return nil
	})
	if ws.key, err = keys.OpenNoteKey(ctx, st, sealer, sink, ws.name, time.Now()); err != nil {
		return fail(fmt.Errorf("witness key: %w", err))
	}
	return ws, nil
}

// defaultWitnessName names a new witness after the host, with a random
// suffix.
func defaultWitnessName() (string, error) {
	host, err := os.Hostname()
	if err != nil || !validKeyName(host) {
		host = "custos"
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return strings.ToLower(host) + "/witness/" + hex.EncodeToString(b[:]), nil
}

// validKeyName reports whether name is a signed-note key name: non-empty,
// no Unicode spaces, no plus signs.
func validKeyName(name string) bool {
	return name != "" && strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+") && !strings.ContainsFunc(name, unicode.IsControl)
}

// witnessList is the repeatable --witness URL=VKEY flag of serve. A bad
// value is kept as err rather than returned from Set, because the flag
// package would repeat the value, password and all, in its message.
type witnessList struct {
	remotes []witness.Remote
	err     error
}

func (l *witnessList) String() string {
	if l == nil {
		return ""
	}
	var parts []string
	for _, r := range l.remotes {
		parts = append(parts, witnessURL(r.URL)+"="+r.VerifierKey)
	}
	return strings.Join(parts, " ")
}

// Set parses URL=VKEY. A verifier key's name may itself hold "=", so the
// value is split at the first "=" after which a verifier key follows.
func (l *witnessList) Set(v string) error {
	r, err := parseWitnessFlag(v)
	if err != nil {
		l.err = errors.Join(l.err, err)
		return nil
	}
	l.remotes = append(l.remotes, r)
	return nil
}

func parseWitnessFlag(v string) (witness.Remote, error) {
	for i := range len(v) {
		if v[i] != '=' {
			continue
		}
		u, vkey := v[:i], v[i+1:]
		if _, err := auditlog.NewCosignatureVerifier(vkey); err != nil {
			continue
		}
		if _, err := witness.ParseURL(u); err != nil {
			return witness.Remote{}, err
		}
		return witness.Remote{URL: u, VerifierKey: vkey}, nil
	}
	return witness.Remote{}, errors.New("want URL=VKEY: the witness's submission URL and its cosignature verifier key (`custos witness key` prints it)")
}

// witnessURL is a witness URL for output: without any password in it.
func witnessURL(s string) string {
	u, err := witness.ParseURL(s)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}
