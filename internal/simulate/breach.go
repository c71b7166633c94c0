// Package simulate runs drills against a real custos: synthetic customers,
// their ordinary traffic, and attacks, over loopback HTTP.
package simulate

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/custos-dev/custos/internal/issuer"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/store/sqlite"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/accounts"
	"github.com/custos-dev/custos/internal/clients"
	"github.com/custos-dev/custos/internal/demoshop"
	"github.com/custos-dev/custos/internal/detect"
	"github.com/custos-dev/custos/internal/keys"
	"github.com/custos-dev/custos/internal/node"
)

// BreachConfig configures the breach drill.
type BreachConfig struct {
	// Customers seeded; 0 means 10,000.
	Customers int
	// Active customers sign in, refresh and read their own data in each
	// phase; 0 means min(Customers, 200).
	Active int
	// Targets are the customers whose data the attacker reads in each
	// phase; 0 means one in a hundred customers, at least min(Customers,
	// 50).
	Targets int
	// AttackIPs the attacker rotates through; 0 means 5.
	AttackIPs int
	// Workers run ordinary sessions at once; 0 means 16.
	Workers int
	// Dir is the data directory; "" means a temporary one, removed after.
	// With URL it is the running custos's own data directory.
	Dir string
	// URL, if set, is a running custos (its issuer URL, on loopback) to
	// drill against instead of a fresh one: the drill seeds customers, a
	// client and a legacy key into it through Dir, as custos's other
	// administrative commands do, drives its sign-in and token endpoints
	// over HTTP, relies on its detector, and revokes the legacy key and
	// removes the client when it ends.
	URL string
	// Keys configures key custody as the running custos does (URL only):
	// retiring the legacy key promotes its next key, which must have been
	// published for Keys.PublishLead.
	Keys keys.Config
	// RootKeyFile and RootKeyEnv give the running custos's root key as
	// its serve was given it (URL only); by default, DIR/root.key.
	RootKeyFile, RootKeyEnv string
	// Progress receives the timeline as it happens; nil for none.
	Progress io.Writer
	// Logger receives custos's own log; nil discards it.
	Logger *slog.Logger
}

func (c *BreachConfig) defaults() error {
	if c.Customers == 0 {
		c.Customers = 10_000
	}
	if c.Active == 0 {
		c.Active = min(c.Customers, 200)
	}
	if c.Targets == 0 {
		c.Targets = max(c.Customers/100, min(c.Customers, 50))
	}
	if c.AttackIPs == 0 {
		c.AttackIPs = 5
	}
	if c.Workers == 0 {
		c.Workers = 16
	}
	switch {
	case c.Customers < 1 || c.Customers > 50_000_000:
		return errors.New("customers: from 1 to 50,000,000")
	case c.Active < 1 || c.Active > c.Customers || c.Active > 60_000:
		return errors.New("active customers: from 1 to the customers, at most 60,000 (one loopback address each)")
	case c.Targets < 1 || c.Targets > c.Customers:
		return errors.New("targets: from 1 to the customers")
	case c.AttackIPs < 1 || c.AttackIPs > 250:
		return errors.New("attack IPs: from 1 to 250")
	case c.Workers < 1 || c.Workers > 1024:
		return errors.New("workers: from 1 to 1024")
	}
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
			return errors.New("url: the running custos's issuer URL, such as http://127.0.0.1:8080")
		case !net.ParseIP(u.Hostname()).IsLoopback() && u.Hostname() != "localhost":
			return errors.New("url: the drill gives each customer and the attacker their own loopback address, so it runs on the custos host against a loopback URL")
		case c.Dir == "":
			return errors.New("url: give the running custos's data directory too: the drill seeds its customers and legacy key through it")
		}
		c.URL = strings.TrimSuffix(c.URL, "/")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Report is what the drill found.
type Report struct {
	Customers      int `json:"customers"`
	NormalRequests int `json:"normal_requests"`
	ForgedRequests int `json:"forged_requests"`
	// Enforce is phase one: the guard refuses what fails a check.
	Enforce PhaseReport `json:"enforce"`
	// Monitor is phase two: the guard forwards it, records and raises.
	Monitor PhaseReport `json:"monitor"`
	Normal  struct {
		// FalseAlerts are alerts raised by ordinary customers' traffic,
		// in either phase.
		FalseAlerts int `json:"false_alerts"`
		Sessions    int `json:"sessions"`
		// Failures are ordinary requests that did not get what a
		// customer should (a read refused, a sign-in failed).
		Failures int `json:"failures"`
	} `json:"normal"`
	Seconds  float64  `json:"seconds"`
	Timeline []Moment `json:"timeline"`
}

// PhaseReport is one phase of the drill.
type PhaseReport struct {
	ForgedRequests int `json:"forged_requests"`
	// ForgedAccepted and RecordsExposed: forged requests answered 200,
	// and the customer records those answers held.
	ForgedAccepted int `json:"forged_accepted"`
	RecordsExposed int `json:"records_exposed"`
	// ForgedForwarded: forged requests the guard let through (monitor).
	ForgedForwarded int `json:"forged_forwarded"`
	// ExposedSubjects: customers whose data left for a forged token, as
	// the audit log records it; ScopeExact says whether that is exactly
	// the set the attacker got.
	ExposedSubjects int  `json:"exposed_subjects"`
	ScopeExact      bool `json:"scope_exact"`
	// SecondsToFirstAlert is from the phase's first forged request to the
	// first alert the attack raised; nil if it raised none.
	SecondsToFirstAlert *float64 `json:"seconds_to_first_alert"`
	// Alerts the attack raised: rule → events counted.
	Alerts map[string]int64 `json:"alerts"`
	// Responses are the automatic responses detection carried out:
	// action → how many (block_ip: the attacker's addresses blocked).
	Responses map[string]int `json:"responses"`
}

// Moment is one line of the timeline.
type Moment struct {
	At   float64 `json:"at"` // seconds from the start
	What string  `json:"what"`
}

// The actors the drill records its own operations as (besides the run's
// migrator): the drill itself, HR offboarding the migrator, and the
// security team acknowledging phase one's alerts.
const (
	actorDrill = "drill"
	actorHR    = "drill:hr"
	actorSOC   = "drill:soc"
)

const (
	shopAudience = "https://shop.drill.example"
	redirectURI  = "http://127.0.0.1:9/callback"
	customerUA   = "ShopApp/3.2 (iPhone; iOS 17.4)"
	attackerUA   = "python-requests/2.31.0"
	shopSeed     = 2025
)

// drill is one run.
type drill struct {
	cfg   BreachConfig
	start time.Time
	n     *node.Node
	base  string
	// Against a running custos, names are made unique to the run (tag):
	// the customers' login IDs, the shop client and the legacy key's
	// custodian, none of which a store lets two drills share. The
	// customers' password is random and forgotten with the run.
	tag       string
	password  string
	shop      string   // the shop app's client id
	migrator  string   // the legacy key's custodian: the insider
	sorted    []string // ids, sorted: whether an account is the drill's
	attackNet int
	guardURL  string
	upstream  *url.URL
	guard     atomic.Pointer[http.Handler]
	ids       []string // account ids, by customer number
	legacy    ed25519.PrivateKey
	kid       string
	report    *Report
	mu        sync.Mutex
}

func (d *drill) note(format string, args ...any) {
	m := Moment{At: math.Round(time.Since(d.start).Seconds()*1000) / 1000, What: fmt.Sprintf(format, args...)}
	d.mu.Lock()
	d.report.Timeline = append(d.report.Timeline, m)
	d.mu.Unlock()
	if d.cfg.Progress != nil {
		fmt.Fprintf(d.cfg.Progress, "%9.3fs  %s\n", m.At, m.What)
	}
}

// Breach runs the breach drill: a fresh custos with Customers synthetic
// customers and the demo shop behind the guard; ordinary customers signing
// in, refreshing and reading their own data; and, in the middle, an
// insider who kept a copy of a legacy signing key (imported into custos at
// migration, since retired) forging tokens for many customers from a few
// rotating IPs. Phase one runs the guard in enforce mode, phase two in
// monitor mode, with the detector watching throughout.
func Breach(ctx context.Context, cfg BreachConfig) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	d := &drill{cfg: cfg, start: time.Now(), report: &Report{Customers: cfg.Customers}, password: rand.Text(),
		shop: "shop-app", migrator: "drill:migration"}
	if cfg.URL != "" {
		d.tag = strings.ToLower(rand.Text()[:8])
		d.attackNet = 1 + mrand.IntN(254)
		d.shop += "-drill-" + d.tag
		d.migrator += "-" + d.tag
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop, err := d.setUp(ctx)
	if stop != nil {
		defer stop()
	}
	if err != nil {
		return d.report, err
	}
	if cfg.URL == "" {
		det, err := d.n.Detector(ctx, detect.DefaultRules(), nil)
		if err != nil {
			return d.report, err
		}
		detDone := make(chan struct{})
		go func() { det.Run(ctx); close(detDone) }()
		defer func() { cancel(); <-detDone }()
		d.note("detector running %d rules", len(detect.DefaultRules().Rules))
	}

	active := sample(cfg.Customers, cfg.Active, 1)
	targets := sample(cfg.Customers, cfg.Targets, 7)
	for _, mode := range []guard.Mode{guard.Enforce, guard.Monitor} {
		pr := &d.report.Enforce
		if mode == guard.Monitor {
			pr = &d.report.Monitor
		}
		if err := d.phase(ctx, mode, active, targets, pr); err != nil {
			return d.report, err
		}
	}
	d.report.ForgedRequests = d.report.Enforce.ForgedRequests + d.report.Monitor.ForgedRequests
	d.report.Seconds = math.Round(time.Since(d.start).Seconds()*1000) / 1000
	d.note("drill done")
	return d.report, nil
}

// setUp starts custos (or opens the running one's store), seeds it,
// imports and retires the legacy key, and puts the demo shop behind the
// guard.
func (d *drill) setUp(ctx context.Context) (stop func(), err error) {
	cfg := d.cfg
	var cleanups []func()
	stop = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	var n *node.Node
	if cfg.URL != "" {
		if n, err = d.openTarget(ctx); err != nil {
			return stop, err
		}
		cleanups = append(cleanups, func() { n.Close() })
		// Whatever happens, the key whose private half the drill holds
		// and the client its customers signed in with stop working.
		cleanups = append(cleanups, d.tidyTarget)
	} else {
		dir := cfg.Dir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "custos-drill-"); err != nil {
				return stop, err
			}
			cleanups = append(cleanups, func() { os.RemoveAll(dir) })
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return stop, err
		}
		// Keys published for a second before they sign, so that the
		// drill can retire the legacy key at once.
		n, err = node.Open(ctx, node.Config{DataDir: dir, Addr: ln.Addr().String(), Logger: cfg.Logger,
			Keys: keys.Config{JWKSMaxAge: time.Second, PublishLead: time.Second}})
		if err != nil {
			ln.Close()
			return stop, err
		}
		d.n, d.base = n, n.Config().Issuer
		cleanups = append(cleanups, func() { n.Close() })
		serveCtx, cancelServe := context.WithCancel(context.Background())
		served := make(chan struct{})
		go func() { n.Serve(serveCtx, ln); close(served) }()
		cleanups = append(cleanups, func() { cancelServe(); <-served })
		d.note("custos serving %s (data in %s)", d.base, dir)
	}

	if _, _, err := n.Clients.Add(ctx, clients.Spec{ID: d.shop, Name: "Drill shop", Public: true,
		RedirectURIs: []string{redirectURI}, Audiences: []string{shopAudience}}, actorDrill); err != nil {
		return stop, err
	}
	if err := d.seed(ctx); err != nil {
		return stop, err
	}
	if err := d.legacyKey(ctx); err != nil {
		return stop, err
	}

	shop := &http.Server{Handler: demoshop.New(shopSeed).Handler(), ReadHeaderTimeout: 10 * time.Second}
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return stop, err
	}
	go shop.Serve(sln)
	cleanups = append(cleanups, func() { shop.Close() })
	up := &url.URL{Scheme: "http", Host: sln.Addr().String()}
	if err := d.setGuard(ctx, guard.Enforce, up); err != nil {
		return stop, err
	}
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return stop, err
	}
	d.guardURL = "http://" + gln.Addr().String()
	gsrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*d.guard.Load()).ServeHTTP(w, r) }),
		ReadHeaderTimeout: 10 * time.Second}
	go gsrv.Serve(gln)
	cleanups = append(cleanups, func() { gsrv.Close() })
	d.upstream = up
	d.note("demo shop behind the guard at %s, in enforce mode", d.guardURL)
	return stop, nil
}

// seed registers the customers in bulk.
func (d *drill) seed(ctx context.Context) error {
	shop := demoshop.New(shopSeed)
	d.ids = make([]string, 0, d.cfg.Customers)
	const chunk = 50_000
	for from := 0; from < d.cfg.Customers; from += chunk {
		news := make([]accounts.NewAccount, 0, min(chunk, d.cfg.Customers-from))
		for i := from; i < from+cap(news); i++ {
			news = append(news, accounts.NewAccount{LoginID: d.loginID(i), Name: shop.Customer(fmt.Sprint(i)).Name})
		}
		as, err := d.n.Accounts.RegisterMany(ctx, news, d.password, actorDrill)
		if err != nil {
			return fmt.Errorf("seeding customers: %w", err)
		}
		for _, a := range as {
			d.ids = append(d.ids, a.ID)
		}
		if d.cfg.Customers > chunk {
			d.note("seeded %d of %d customers", len(d.ids), d.cfg.Customers)
		}
	}
	d.sorted = slices.Sorted(slices.Values(d.ids))
	d.note("seeded %d customers", len(d.ids))
	return nil
}

// isCustomer reports whether account id is one the drill seeded.
func (d *drill) isCustomer(id string) bool {
	_, ok := slices.BinarySearch(d.sorted, id)
	return ok
}

// loginID is customer i's login ID.
func (d *drill) loginID(i int) string {
	if d.tag != "" {
		return fmt.Sprintf("customer%07d.%s@drill.example", i, d.tag)
	}
	return fmt.Sprintf("customer%07d@drill.example", i)
}

// legacyKey imports the signing key of the system custos replaced, as a
// migration does so that tokens it signed keep verifying, and retires it
// for a key custos made. The attacker kept a copy of its private half.
func (d *drill) legacyKey(ctx context.Context) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	info, err := d.n.Custody.Import(ctx, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), d.migrator)
	if info.ID != "" {
		// Stored, even if what followed failed: tidying up revokes it.
		d.legacy, d.kid = priv, info.ID
	}
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		err := d.n.Custody.Rotate(ctx, d.migrator, "legacy key replaced by a custos key")
		if err == nil {
			break
		}
		if _, ok := errors.AsType[*keys.NotReadyError](err); !ok || time.Now().After(deadline) {
			return fmt.Errorf("retiring the legacy key: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d.cfg.URL != "" {
		// The running custos re-reads its keys now and then; until it
		// does, it may still take the legacy key for the active one.
		select {
		case <-time.After(2 * node.KeyReload):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	d.note("legacy signing key %s imported at migration and retired; the insider kept a copy", d.kid)
	// The developer who ran the migration left, as in 2025. The key stays
	// as it was (the breach's premise: nobody revoked it); the offboarding
	// is recorded, so detection knows whose key it is.
	if _, err := d.n.Custody.Offboard(ctx, d.migrator, actorHR, "the developer who migrated the legacy key left the company", false); err != nil {
		return fmt.Errorf("offboarding the migrator: %w", err)
	}
	d.note("%s, who imported it, left the company: offboarded, key kept", d.migrator)
	return nil
}

// setGuard puts the shop behind a guard in mode.
func (d *drill) setGuard(ctx context.Context, mode guard.Mode, up *url.URL) error {
	text := demoshop.Policy
	if mode == guard.Monitor {
		text = strings.Replace(text, guard.PolicyVersion+"\n", guard.PolicyVersion+"\nmode monitor\n", 1)
	}
	p, err := guard.ParsePolicy("drill.policy", strings.NewReader(text))
	if err != nil {
		return err
	}
	proxy := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(up); pr.SetXForwarded() },
		Transport: &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute},
	}
	h, err := d.n.Guard(ctx, node.GuardConfig{Policy: p, Audience: shopAudience, Upstream: up.String(), Actor: actorDrill}, proxy)
	if err != nil {
		return err
	}
	d.guard.Store(&h)
	return nil
}

// sample picks k of n customer numbers, spread evenly from an offset.
func sample(n, k, offset int) []int {
	out := make([]int, k)
	for i := range k {
		out[i] = int((int64(i)*int64(n)/int64(k) + int64(offset)) % int64(n))
	}
	return out
}

// openTarget opens the store of the custos running at URL, as custos's
// administrative commands do, once it is sure that URL serves it and runs
// a detector on it.
func (d *drill) openTarget(ctx context.Context) (*node.Node, error) {
	cfg := d.cfg
	// Nothing is opened, so nothing is made, in a directory that is not
	// a custos's, or without the root key its serve uses.
	if _, err := os.Stat(filepath.Join(cfg.Dir, sqlite.FileName)); err != nil {
		return nil, fmt.Errorf("%s is not the data directory of a custos that has run", cfg.Dir)
	}
	if cfg.RootKeyFile == "" && cfg.RootKeyEnv == "" {
		if _, err := os.Stat(filepath.Join(cfg.Dir, node.RootKeyFile)); err != nil {
			return nil, fmt.Errorf("%s has no root.key: give the running custos's root key as its serve was given it (--root-key-file or --root-key-env)", cfg.Dir)
		}
	}
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := getJSON(ctx, cfg.URL+issuer.PathDiscovery, &disc); err != nil {
		return nil, fmt.Errorf("the custos at %s: %w", cfg.URL, err)
	}
	if disc.Issuer != cfg.URL {
		return nil, fmt.Errorf("%s serves issuer %q: give exactly that URL", cfg.URL, disc.Issuer)
	}
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := getJSON(ctx, disc.JWKSURI, &set); err != nil {
		return nil, fmt.Errorf("the custos at %s: %w", cfg.URL, err)
	}
	kc := cfg.Keys
	kc.Logger = cfg.Logger
	n, err := node.Open(ctx, node.Config{DataDir: cfg.Dir, Issuer: cfg.URL, Logger: cfg.Logger, Keys: kc,
		RootKeyFile: cfg.RootKeyFile, RootKeyEnv: cfg.RootKeyEnv})
	if err != nil {
		return nil, err
	}
	known, err := n.Custody.List(ctx)
	if err != nil {
		n.Close()
		return nil, err
	}
	for _, k := range set.Keys {
		if !slices.ContainsFunc(known, func(i keys.KeyInfo) bool { return i.ID == k.Kid }) {
			n.Close()
			return nil, fmt.Errorf("%s publishes key %s, which %s does not hold: that is not its data directory", cfg.URL, k.Kid, cfg.Dir)
		}
	}
	if len(set.Keys) == 0 {
		n.Close()
		return nil, fmt.Errorf("%s publishes no signing key", cfg.URL)
	}
	d.n, d.base = n, cfg.URL
	if err := d.nextKeyReady(ctx); err != nil {
		n.Close()
		return nil, err
	}
	if err := d.caughtUp(ctx, 30*time.Second); err != nil {
		n.Close()
		return nil, fmt.Errorf("the custos at %s does not seem to run detection on %s (custos serve does): %w", cfg.URL, cfg.Dir, err)
	}
	d.note("drilling against the custos at %s (data in %s); this run's names end in %s", d.base, cfg.Dir, d.tag)
	return n, nil
}

// nextKeyReady checks that the running custos's next signing key may sign
// now. Imported, the legacy key signs until the next key takes over, which
// must be at once.
func (d *drill) nextKeyReady(ctx context.Context) error {
	list, err := d.n.Custody.List(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(list, func(k keys.KeyInfo) bool { return k.State == store.KeyPending })
	switch {
	case i < 0:
		return errors.New("the running custos has no next signing key; run the drill once it has one")
	case time.Now().Before(list[i].ActivateAt):
		return fmt.Errorf("the running custos's next signing key may sign only from %s (in %s), and the drill retires its legacy key for it at once: run the drill then",
			list[i].ActivateAt.UTC().Format(time.RFC3339), time.Until(list[i].ActivateAt).Round(time.Second))
	}
	return nil
}

// tidyTarget leaves the running custos as safe as it was: the legacy key,
// whose private half the drill held, is revoked; the shop client is
// removed, and its tokens revoked with it; the attacker's addresses are
// unblocked. The drill's customers stay, recorded as the drill's, with a
// random password nobody keeps.
func (d *drill) tidyTarget() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if d.kid != "" {
		if err := d.n.Custody.Revoke(ctx, d.kid, actorDrill, "the breach drill is over; it held this key's private half"); err != nil {
			d.note("REVOKE THE LEGACY KEY BY HAND: custos keys revoke %s (%v)", d.kid, err)
		} else {
			d.note("legacy key %s revoked", d.kid)
		}
	}
	switch err := d.n.Clients.Remove(ctx, d.shop, actorDrill); {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		d.note("REMOVE THE DRILL'S CLIENT BY HAND: custos clients remove %s (%v)", d.shop, err)
	default:
		d.note("client %s removed, and its tokens revoked", d.shop)
	}
	for i := range d.cfg.AttackIPs {
		err := d.n.UnblockIP(ctx, d.attackerIP(i), actorDrill, "the breach drill is over")
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			d.note("could not unblock %s: %v", d.attackerIP(i), err)
		}
	}
}

// getJSON fetches u and decodes it into v.
func getJSON(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}
