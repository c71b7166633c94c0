// Package node assembles one custos node from its parts — the store, key
// custody, accounts and the issuer — from a plain Config, and serves it.
// The CLI's serve command runs a node; its administrative commands open one
// without serving, so they act through the same code paths and events.
package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/accounts"
	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/clients"
	"github.com/custos-dev/custos/internal/demo"
	"github.com/custos-dev/custos/internal/demoshop"
	"github.com/custos-dev/custos/internal/issuer"
	"github.com/custos-dev/custos/internal/keys"
	"github.com/custos-dev/custos/internal/ssf"
	"github.com/custos-dev/custos/internal/store/sqlite"
	"github.com/custos-dev/custos/internal/tlog"
	"github.com/custos-dev/custos/internal/witness"
	"github.com/custos-dev/custos/verify"
)

// Defaults.
const (
	DefaultDataDir = "custos-data"
	DefaultAddr    = "127.0.0.1:8080"
	// RootKeyFile is the default root key's name in the data directory.
	RootKeyFile = "root.key"
	// secretsFile holds node secrets (device-token and CSRF keys), sealed
	// under the root key.
	secretsFile   = "secrets.sealed"
	pruneInterval = 10 * time.Minute
)

// KeyReload is how often a serving node re-reads the signing keys, so that
// a change another process made (a key imported, rotated or revoked by
// `custos keys`) takes effect here within it.
const KeyReload = time.Second

// Config configures a node.
type Config struct {
	DataDir string // default DefaultDataDir
	Addr    string // listen address; default DefaultAddr
	// Issuer is the public issuer URL; default http://Addr.
	Issuer string
	// RootKeyEnv, if set, names an environment variable holding the
	// base64 root key; RootKeyFile, if set, is a root key file outside the
	// data directory. With neither, the root key is DataDir/root.key,
	// created on first start.
	RootKeyEnv  string
	RootKeyFile string
	Keys        keys.Config
	Accounts    accounts.Config
	Issuance    issuer.Config // Issuer and Logger are filled in by Open
	Logger      *slog.Logger
	// AuditOrigin names the audit log in its checkpoints. It is fixed when
	// the log is created; the default is the host of Issuer (when set; else
	// "custos"), "/audit/" and a random suffix.
	AuditOrigin string
	// AuditLog tunes the Merkle log; Origin, Key, Verifier, Logger and
	// CheckpointFile are filled in by Open.
	AuditLog tlog.Config
	// Demo mounts the demo relying party at /demo/.
	Demo bool
	// Witnesses are the c2sp.org/tlog-witness witnesses Serve sends each
	// new audit-log checkpoint to; their cosignatures are kept with the
	// checkpoints.
	Witnesses []witness.Remote
}

// Node is an assembled custos.
type Node struct {
	cfg      Config
	Store    *sqlite.Store
	Custody  *keys.Custody
	Accounts *accounts.Service
	Issuer   *issuer.Issuer
	Clients  *clients.Registry
	// Log is the Merkle log under the audit log; Audit is the event sink
	// every part of the node records to.
	Log   *tlog.Log
	Audit *audit.Log
	// Retention prunes the audit log under retention policy and legal
	// holds; Serve runs it.
	Retention *audit.Retention
	// AuditVerifierKey is the audit log's public key as a note verifier
	// key: what witnesses and auditors check checkpoints with.
	AuditVerifierKey string
	// Witnesses sends checkpoints to the configured witnesses while the
	// node serves; nil without witnesses.
	Witnesses *witness.Submitter
	log       *slog.Logger
	// demoShop is the demo shop behind the guard, with Demo.
	demoShop http.Handler
	// blocks is the IPs the guard refuses (detection's block_ip).
	blocks blocklist
}

// Open opens the data directory and assembles a node. Close it when done.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	// A log created now is named after the issuer only if one was given:
	// an administrative command run before the first serve must not name
	// it after the default address.
	namedIssuer := cfg.Issuer
	if cfg.Issuer == "" {
		cfg.Issuer = "http://" + cfg.Addr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	sealer, err := openSealer(cfg)
	if err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, Store: st, log: cfg.Logger}
	n.blocks.n = n
	fail := func(err error) (*Node, error) {
		if n.Log != nil {
			n.Log.Close()
		}
		st.Close()
		return nil, err
	}
	sec, err := loadSecrets(ctx, filepath.Join(cfg.DataDir, secretsFile), sealer)
	if err != nil {
		return fail(err)
	}
	if err = n.openAudit(ctx, cfg, namedIssuer, st, sealer); err != nil {
		return fail(err)
	}
	if n.Retention, err = audit.NewRetention(st, audit.RetentionConfig{Now: cfg.Issuance.Now, Logger: cfg.Logger}); err != nil {
		return fail(err)
	}
	n.Clients = clients.New(st, n.Audit)
	kc := cfg.Keys
	kc.Logger = cfg.Logger
	if n.Custody, err = keys.Open(ctx, st, sealer, n.Audit, kc); err != nil {
		return fail(err)
	}
	ac := cfg.Accounts
	ac.DeviceKey = sec.DeviceKey
	if n.Accounts, err = accounts.New(st, n.Audit, ac); err != nil {
		return fail(err)
	}
	ic := cfg.Issuance
	ic.Issuer, ic.Logger, ic.CSRFKey = cfg.Issuer, cfg.Logger, sec.CSRFKey
	if n.Issuer, err = issuer.New(ic, st, n.Custody, n.Accounts, n.Audit); err != nil {
		return fail(err)
	}
	if cfg.Demo {
		if n.demoShop, err = n.openDemoShop(ctx); err != nil {
			return fail(err)
		}
	}
	return n, nil
}

// openDemoShop puts the demo shop behind the guard, with its policy, for
// tokens the demo client gets.
func (n *Node) openDemoShop(ctx context.Context) (http.Handler, error) {
	policy, err := guard.ParsePolicy("demoshop", strings.NewReader(demoshop.Policy))
	if err != nil {
		return nil, err
	}
	return n.Guard(ctx, GuardConfig{Policy: policy, Audience: demo.ShopAudience(n.cfg.Issuer), Upstream: "demo-shop", Actor: "demo"},
		demoshop.New(1).Handler())
}

func openSealer(cfg Config) (keys.Sealer, error) {
	switch {
	case cfg.RootKeyEnv != "" && cfg.RootKeyFile != "":
		return nil, errors.New("give the root key as a file or an environment variable, not both")
	case cfg.RootKeyEnv != "":
		s, err := keys.NewEnvSealer(cfg.RootKeyEnv, os.Getenv(cfg.RootKeyEnv))
		os.Unsetenv(cfg.RootKeyEnv) // keep it out of child processes
		return s, err
	case cfg.RootKeyFile != "":
		return keys.OpenFileSealer(cfg.RootKeyFile, false)
	default:
		return keys.OpenFileSealer(filepath.Join(cfg.DataDir, RootKeyFile), true)
	}
}

// Config returns the node's effective configuration.
func (n *Node) Config() Config { return n.cfg }

// Verifier returns an in-process verifier for access tokens meant for
// audience: keys straight from custody (a revoked key is refused at once)
// and receipts straight from the store.
func (n *Node) Verifier(audience string) (*verify.Verifier, error) {
	return n.verifier(audience, issuer.LocalReceipts(n.Store))
}

func (n *Node) verifier(audience string, receipts verify.ReceiptChecker) (*verify.Verifier, error) {
	return verify.New(verify.Config{
		Issuer:   n.cfg.Issuer,
		Audience: audience,
		Keys:     n.Custody,
		Receipts: receipts,
		Now:      n.cfg.Issuance.Now,
	})
}

// Close integrates and checkpoints what the audit log holds, and closes
// the store.
func (n *Node) Close() error { return errors.Join(n.Log.Close(), n.Store.Close()) }

// Handler is the node's HTTP handler.
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", n.Issuer.Handler())
	// The audit log's checkpoints and hash tiles are public: witnesses
	// and auditors check consistency with them, and they say nothing about
	// the events. Entry bundles hold the events and are not served.
	mux.Handle(AuditPath, n.Log.Handler(AuditPath, nil))
	// Shared Signals: the transmitter's metadata, and poll streams.
	mux.HandleFunc("GET "+PathSSFConfiguration, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=300")
		json.NewEncoder(w).Encode(n.ssfConfiguration())
	})
	mux.Handle("POST "+PathSSFPoll+"{stream}", ssf.PollHandler(n.Store, n.Custody, n.cfg.Issuance.Now, n.log))
	mux.Handle(PathAdmin, n.adminHandler())
	if n.cfg.Demo {
		mux.Handle("/demo/", demo.Handler(n.cfg.Issuer, n.demoShop))
		mux.Handle(demo.ShopPath+"/", http.StripPrefix(demo.ShopPath, n.demoShop))
	}
	return mux
}

// AuditPath is where the audit log's tlog-tiles API is served.
const AuditPath = "/audit/"

// Serve serves HTTP on ln until ctx ends, running key rotation, receipt
// pruning and audit-log retention alongside. It shuts down gracefully.
func (n *Node) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go n.Custody.Run(ctx)
	go n.Issuer.RunPruner(ctx, pruneInterval)
	go n.reloadKeys(ctx)
	stopWitnesses := n.runWitnesses(ctx)
	defer stopWitnesses()
	go n.Retention.Run(ctx, audit.DefaultPruneInterval)
	go n.runSSF(ctx)
	go n.pruneQueues(ctx)
	return ServeHTTP(ctx, ln, n.Handler(), n.log)
}

// ServeHTTP serves h on ln with custos's timeouts and header limit until ctx
// ends, then shuts down gracefully. The witness serves through it too.
func ServeHTTP(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    issuer.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// reloadKeys picks up key changes other processes made.
func (n *Node) reloadKeys(ctx context.Context) {
	t := time.NewTicker(KeyReload)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := n.Custody.Reload(ctx); err != nil && ctx.Err() == nil {
				n.log.Error("reloading keys", "err", err)
			}
		}
	}
}
