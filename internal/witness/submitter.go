package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store"
)

// Submitter defaults and limits.
const (
	// DefaultMinBackoff is the first wait after a failed submission.
	DefaultMinBackoff = time.Second
	// DefaultMaxBackoff bounds the wait between attempts: a witness that
	// comes back is caught up within about this long.
	DefaultMaxBackoff = 5 * time.Minute
	// DefaultRequestTimeout bounds one add-checkpoint request.
	DefaultRequestTimeout = 30 * time.Second
	// MaxResponseSize bounds an add-checkpoint response body.
	MaxResponseSize = 64 << 10
	// MaxClockSkew is how far in the future a cosignature's timestamp may
	// be; a cosignature dated later is refused.
	MaxClockSkew = 5 * time.Minute
)

// A Remote is a witness the log sends its checkpoints to.
type Remote struct {
	// URL is the witness's submission prefix: the request goes to
	// URL + "/add-checkpoint".
	URL string
	// VerifierKey is the witness's cosignature verifier key, as
	// auditlog.CosignatureVerifierKey makes it.
	VerifierKey string
}

// CosignatureStore keeps the cosignatures the log's witnesses return.
type CosignatureStore interface {
	// WitnessProgress returns the size of the largest checkpoint the
	// witness cosigned, or an error wrapping store.ErrNotFound.
	WitnessProgress(ctx context.Context, witness string) (store.WitnessProgress, error)
	// AddCosignatures appends cosignature lines to the stored checkpoint
	// note of their size and records the witness's progress.
	AddCosignatures(ctx context.Context, c store.Cosignatures) error
}

// Proofs computes consistency proofs of the log (*tlog.Log does).
type Proofs interface {
	ConsistencyProof(ctx context.Context, older, newer uint64) ([]auditlog.Hash, error)
}

// SubmitterConfig configures a Submitter.
type SubmitterConfig struct {
	// Witnesses are the witnesses to send checkpoints to.
	Witnesses []Remote
	// Log verifies the log's own checkpoint signatures.
	Log note.Verifier
	// Proofs computes the consistency proofs sent with each checkpoint.
	Proofs Proofs
	// Client sends the requests; nil means a client with
	// DefaultRequestTimeout.
	Client *http.Client
	// MinBackoff and MaxBackoff bound the jittered, doubling wait after a
	// failure; 0 means DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Submitter sends the log's checkpoints to its witnesses and keeps their
// cosignatures. Submit is the log's OnCheckpoint hook; Run does the
// sending.
type Submitter struct {
	cfg     SubmitterConfig
	st      CosignatureStore
	remotes []*remote
	latest  atomic.Pointer[checkpoint]
}

type checkpoint struct {
	signed []byte
	cp     auditlog.Checkpoint
}

type remote struct {
	vkey     string // the witness's verifier key: its identity in the store
	endpoint string // URL + "/add-checkpoint"
	display  string // URL without credentials, for logs and errors
	verifier note.Verifier
	kick     chan struct{}
}

// NewSubmitter returns a Submitter that records cosignatures in st.
func NewSubmitter(st CosignatureStore, cfg SubmitterConfig) (*Submitter, error) {
	if st == nil || cfg.Log == nil || cfg.Proofs == nil {
		return nil, errors.New("witness: the submitter needs a store, the log's verifier and its proofs")
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MinBackoff < 0 || cfg.MaxBackoff < cfg.MinBackoff {
		return nil, errors.New("witness: backoff bounds must be positive, the maximum no less than the minimum")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: DefaultRequestTimeout}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Submitter{cfg: cfg, st: st}
	seen := make(map[string]bool)
	for _, w := range cfg.Witnesses {
		r, err := newRemote(w)
		if err != nil {
			return nil, err
		}
		if seen[r.vkey] {
			return nil, fmt.Errorf("witness: %s given twice", r.verifier.Name())
		}
		seen[r.vkey] = true
		s.remotes = append(s.remotes, r)
	}
	return s, nil
}

func newRemote(w Remote) (*remote, error) {
	v, err := auditlog.NewCosignatureVerifier(w.VerifierKey)
	if err != nil {
		return nil, fmt.Errorf("witness: verifier key: %w", err)
	}
	u, err := ParseURL(w.URL)
	if err != nil {
		return nil, err
	}
	return &remote{
		vkey:     w.VerifierKey,
		endpoint: strings.TrimSuffix(u.String(), "/") + "/add-checkpoint",
		display:  u.Redacted(),
		verifier: v,
		kick:     make(chan struct{}, 1),
	}, nil
}

// ParseURL parses a witness's submission prefix: an absolute http or https
// URL without a query or fragment.
func ParseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("witness: %q is not an http or https URL without a query", redact(s))
	}
	return u, nil
}

// redact hides the userinfo of a URL that may not parse.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return "…" + s[i:]
	}
	return s
}

// Submit queues a new checkpoint of the log for the witnesses. It never
// blocks: only the newest checkpoint waits to be sent, and an older one
// still waiting is replaced. It is the log's OnCheckpoint hook.
func (s *Submitter) Submit(signed []byte, cp auditlog.Checkpoint) {
	if len(signed) == 0 {
		return
	}
	next := &checkpoint{signed: bytes.Clone(signed), cp: cp}
	for {
		old := s.latest.Load()
		if old != nil && old.cp.Size >= cp.Size {
			return
		}
		if s.latest.CompareAndSwap(old, next) {
			break
		}
	}
	for _, r := range s.remotes {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

// Run sends queued checkpoints to the witnesses, one goroutine per
// witness, until ctx ends. It returns when they have all stopped. Call it
// once.
func (s *Submitter) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, r := range s.remotes {
		wg.Go(func() { s.runRemote(ctx, r) })
	}
	wg.Wait()
}

// runRemote keeps one witness up to date with the latest checkpoint.
func (s *Submitter) runRemote(ctx context.Context, r *remote) {
	backoff := s.cfg.MinBackoff
	known := false      // whether cosigned is loaded from the store
	var cosigned uint64 // the largest size the witness cosigned for us
	for {
		var err error
		p := s.latest.Load()
		switch {
		case !known:
			var pr store.WitnessProgress
			pr, err = s.st.WitnessProgress(ctx, r.vkey)
			if errors.Is(err, store.ErrNotFound) {
				pr, err = store.WitnessProgress{}, nil
			}
			cosigned, known = pr.Size, err == nil
		case p == nil || p.cp.Size <= cosigned:
			select {
			case <-ctx.Done():
				return
			case <-r.kick:
			}
			continue
		default:
			var size uint64
			if size, err = s.send(ctx, r, p, cosigned); err == nil {
				cosigned = size
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = s.cfg.MinBackoff
			continue
		}
		wait := jitter(backoff)
		s.cfg.Logger.Warn("witness: submission failed", "witness", r.verifier.Name(), "url", r.display, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
}

// jitter returns a duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// send asks the witness to cosign p, starting from old, the size it last
// cosigned as far as the log knows. If the witness answers that it holds
// another size, send retries once from that size. It returns p's size
// once the cosignature is verified and stored.
func (s *Submitter) send(ctx context.Context, r *remote, p *checkpoint, old uint64) (uint64, error) {
	for attempt := 0; ; attempt++ {
		if old > p.cp.Size {
			return 0, fmt.Errorf("the witness holds a checkpoint of size %d, larger than the log's latest (%d)", old, p.cp.Size)
		}
		proof, err := s.cfg.Proofs.ConsistencyProof(ctx, old, p.cp.Size)
		if err != nil {
			return 0, fmt.Errorf("consistency proof from %d to %d: %w", old, p.cp.Size, err)
		}
		body := Request{OldSize: old, Proof: proof, Checkpoint: p.signed}.Marshal()
		status, resp, ctype, err := s.post(ctx, r, body)
		if err != nil {
			return 0, err
		}
		switch status {
		case http.StatusOK:
			if err := s.keep(ctx, r, p, resp); err != nil {
				return 0, err
			}
			s.cfg.Logger.Info("witness: cosigned", "witness", r.verifier.Name(), "old", old, "size", p.cp.Size)
			return p.cp.Size, nil
		case http.StatusConflict:
			held, err := parseSizeResponse(ctype, resp)
			if err != nil {
				return 0, fmt.Errorf("409 from the witness: %w", err)
			}
			if attempt > 0 || held == old {
				return 0, fmt.Errorf("the witness refused checkpoint %d as inconsistent with the checkpoint of size %d it holds", p.cp.Size, held)
			}
			old = held
		default:
			return 0, fmt.Errorf("the witness answered %d: %q", status, snippet(resp))
		}
	}
}

func (s *Submitter) post(ctx context.Context, r *remote, body []byte) (status int, resp []byte, ctype string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, nil, "", fmt.Errorf("add-checkpoint request: %w", err)
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	res, err := s.cfg.Client.Do(req)
	if err != nil {
		return 0, nil, "", err // net/http leaves the URL's password out
	}
	defer res.Body.Close()
	resp, err = io.ReadAll(io.LimitReader(res.Body, MaxResponseSize+1))
	if err != nil {
		return 0, nil, "", fmt.Errorf("reading the witness's response: %w", err)
	}
	if len(resp) > MaxResponseSize {
		return 0, nil, "", fmt.Errorf("the witness's response is larger than %d bytes", MaxResponseSize)
	}
	return res.StatusCode, resp, res.Header.Get("Content-Type"), nil
}

// parseSizeResponse parses a text/x.tlog.size body: a tree size and a
// newline.
func parseSizeResponse(ctype string, body []byte) (uint64, error) {
	if mt, _, err := mime.ParseMediaType(ctype); err != nil || mt != ContentTypeSize {
		return 0, fmt.Errorf("content type %q, want %s", ctype, ContentTypeSize)
	}
	line, rest, ok := cutLine(body)
	n, ok2 := parseSize(line)
	if !ok || !ok2 || len(rest) != 0 {
		return 0, fmt.Errorf("body %q is not a tree size", snippet(body))
	}
	return n, nil
}

// keep verifies the cosignatures in a 200 response and stores those of the
// witness's key.
func (s *Submitter) keep(ctx context.Context, r *remote, p *checkpoint, resp []byte) error {
	if len(resp) == 0 || resp[len(resp)-1] != '\n' {
		return fmt.Errorf("the witness's response is not signature lines: %q", snippet(resp))
	}
	for line := range bytes.Lines(resp) {
		if !bytes.HasPrefix(line, []byte("— ")) {
			return fmt.Errorf("the witness's response is not signature lines: %q", snippet(resp))
		}
	}
	msg := append(bytes.Clone(p.signed), resp...)
	_, n, err := auditlog.OpenCheckpoint(msg, s.cfg.Log, r.verifier)
	if err != nil {
		return fmt.Errorf("the witness's cosignature does not verify: %w", err)
	}
	var lines []byte
	now := s.cfg.Now()
	for _, sig := range n.Sigs {
		if sig.Name != r.verifier.Name() || sig.Hash != r.verifier.KeyHash() {
			continue
		}
		t, err := auditlog.CosignatureTime(sig)
		if err != nil {
			return fmt.Errorf("the witness's cosignature: %w", err)
		}
		if t.After(now.Add(MaxClockSkew)) {
			return fmt.Errorf("the witness's cosignature is dated %s, in the future", t.Format(time.RFC3339))
		}
		lines = fmt.Appendf(lines, "— %s %s\n", sig.Name, sig.Base64)
	}
	if lines == nil {
		return errors.New("the witness's response holds no cosignature from its key")
	}
	err = s.st.AddCosignatures(ctx, store.Cosignatures{Witness: r.vkey, Size: p.cp.Size, Lines: lines, Time: now})
	if err != nil {
		return fmt.Errorf("storing the cosignature: %w", err)
	}
	return nil
}

// snippet returns the start of a response body for an error message.
func snippet(b []byte) string {
	const n = 200
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
