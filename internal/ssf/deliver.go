package ssf

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/custos-dev/custos/internal/store"
)

// QueueStore is what delivery reads and writes.
type QueueStore interface {
	SSFStreams(ctx context.Context) ([]store.SSFStream, error)
	PendingSSFTokens(ctx context.Context, stream string, now time.Time, limit int) ([]store.SSFToken, error)
	RecordSSFToken(ctx context.Context, t store.SSFToken) error
	AckSSFTokens(ctx context.Context, stream string, jtis []string, at time.Time) (int, error)
}

// Push delivery limits.
const (
	pushTimeout = 10 * time.Second
	maxBackoff  = 15 * time.Minute
	giveUpAfter = 24 * time.Hour
)

// Pusher delivers push streams' tokens (RFC 8935).
type Pusher struct {
	Store  QueueStore
	Keys   Signer
	Client *http.Client // nil: a 10 s timeout, no redirects
	Now    func() time.Time
	Logger *slog.Logger
	// Getenv reads a stream's Authorization header; nil means os.Getenv.
	Getenv func(string) string
}

func (p *Pusher) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}

func (p *Pusher) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.Default()
	}
	return p.Logger
}

// Run pushes due tokens every interval until ctx ends.
func (p *Pusher) Run(ctx context.Context, interval time.Duration) {
	for {
		if _, err := p.PushDue(ctx); err != nil && ctx.Err() == nil {
			p.logger().Warn("ssf: push", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// PushDue makes one attempt at each due token of every push stream, each
// stream beside the others, in order within a stream; it returns how many
// were delivered.
func (p *Pusher) PushDue(ctx context.Context) (int, error) {
	streams, err := p.Store.SSFStreams(ctx)
	if err != nil {
		return 0, err
	}
	var mu sync.Mutex
	delivered := 0
	var firstErr error
	var wg sync.WaitGroup
	for _, s := range streams {
		if s.Delivery != "push" {
			continue
		}
		wg.Go(func() {
			n, err := p.pushStream(ctx, s)
			mu.Lock()
			defer mu.Unlock()
			delivered += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	return delivered, firstErr
}

// pushStream sends a stream's tokens in order: while the first is not
// delivered, the others wait behind it, and its backoff is the stream's.
func (p *Pusher) pushStream(ctx context.Context, s store.SSFStream) (int, error) {
	pending, err := p.Store.PendingSSFTokens(ctx, s.ID, time.Time{}, 100)
	if err != nil {
		return 0, err
	}
	delivered := 0
	for _, t := range pending {
		if t.NextAt.After(p.now()) {
			break // the head waits out its backoff, and the rest with it
		}
		t.Attempts++
		permanent, err := p.push(ctx, s, t)
		switch {
		case err == nil:
			t.DoneAt, t.LastError = p.now(), ""
			delivered++
		case permanent:
			t.GivenUpAt, t.LastError = p.now(), err.Error()
			p.logger().Error("ssf: a receiver refused a security event token", "stream", s.ID, "jti", t.JTI, "err", err)
		default:
			t.LastError = err.Error()
			t.NextAt = p.now().Add(min(maxBackoff, time.Duration(1<<min(t.Attempts, 20))*time.Second))
			if t.NextAt.Sub(t.CreatedAt) > giveUpAfter {
				t.GivenUpAt = p.now()
				p.logger().Error("ssf: push given up", "stream", s.ID, "jti", t.JTI, "attempts", t.Attempts, "err", err)
			} else if t.Attempts == 1 || t.Attempts%10 == 0 {
				p.logger().Warn("ssf: push failed; retrying", "stream", s.ID, "jti", t.JTI, "attempts", t.Attempts, "err", err)
			}
		}
		if rerr := p.Store.RecordSSFToken(ctx, t); rerr != nil {
			return delivered, rerr
		}
		if err != nil && t.GivenUpAt.IsZero() {
			break
		}
	}
	return delivered, nil
}

// permanentErrors are the RFC 8935 §2.3 error codes that no retry can
// mend: the token is wrong for the receiver as it is. Authentication and
// key errors are retried: they are mended by configuration or by the
// receiver refreshing its copy of the keys.
var permanentErrors = map[string]bool{"invalid_request": true, "invalid_issuer": true, "invalid_audience": true}

// push POSTs one token (RFC 8935 §2), signed now. permanent says the
// receiver refused the token itself. Errors name the stream, never its URL
// or credentials.
func (p *Pusher) push(ctx context.Context, s store.SSFStream, t store.SSFToken) (permanent bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	var auth string
	if s.AuthEnv != "" {
		getenv := p.Getenv
		if getenv == nil {
			getenv = os.Getenv
		}
		if auth = getenv(s.AuthEnv); auth == "" {
			return false, fmt.Errorf("stream %s: environment variable %s, its Authorization header, is not set", s.ID, s.AuthEnv)
		}
	}
	tok, err := Sign(ctx, p.Keys, t.Claims, p.now())
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", s.Endpoint, strings.NewReader(tok))
	if err != nil {
		return false, fmt.Errorf("stream %s: bad endpoint", s.ID)
	}
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	client := p.Client
	if client == nil {
		client = &http.Client{Timeout: pushTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return false, fmt.Errorf("stream %s: %v", s.ID, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	switch {
	case resp.StatusCode/100 == 2:
		return false, nil
	case resp.StatusCode == http.StatusBadRequest:
		var e struct {
			Err         string `json:"err"`
			Description string `json:"description"`
		}
		json.Unmarshal(body, &e)
		return permanentErrors[e.Err], fmt.Errorf("stream %s: receiver refused the token: %.64q %.200q", s.ID, e.Err, e.Description)
	}
	return false, fmt.Errorf("stream %s: receiver answered %d", s.ID, resp.StatusCode)
}

// PollHandler serves poll streams (RFC 8936) at POST .../ssf/poll/{stream}:
// a receiver authenticates with its bearer secret, acknowledges what it
// has, and takes what is pending.
//
// It answers at once (returnImmediately is taken as true) with up to 100
// tokens, each signed as it is handed out.
func PollHandler(st QueueStore, keys Signer, now func() time.Time, log *slog.Logger) http.Handler {
	if now == nil {
		now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(status int, code, desc string) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer`)
			}
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]string{"err": code, "description": desc})
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			fail(http.StatusMethodNotAllowed, "invalid_request", "POST the poll request")
			return
		}
		stream, ok := pollStream(r, st)
		if !ok {
			// One answer for an unknown stream and a wrong secret.
			fail(http.StatusUnauthorized, "authentication_failed", "unknown stream or wrong credentials")
			return
		}
		var req struct {
			Ack               []string       `json:"ack"`
			SetErrs           map[string]any `json:"setErrs"`
			MaxEvents         *int           `json:"maxEvents"`
			ReturnImmediately bool           `json:"returnImmediately"`
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			fail(http.StatusBadRequest, "invalid_request", "the body is not a poll request")
			return
		}
		limit := 100
		if req.MaxEvents != nil {
			limit = min(limit, *req.MaxEvents)
		}
		if limit < 0 || len(req.Ack)+len(req.SetErrs) > 10_000 {
			fail(http.StatusBadRequest, "invalid_request", "maxEvents below 0, or too many acknowledgements")
			return
		}
		// A token the receiver reports an error for is done with too:
		// it will not take it better a second time. The error is logged.
		done := append([]string{}, req.Ack...)
		for jti, e := range req.SetErrs {
			done = append(done, jti)
			log.Warn("ssf: a poll receiver reported an error for a token", "stream", stream.ID, "jti", jti, "err", fmt.Sprintf("%.200v", e))
		}
		if len(done) > 0 {
			if _, err := st.AckSSFTokens(r.Context(), stream.ID, done, now()); err != nil {
				log.Error("ssf: poll acknowledgement", "stream", stream.ID, "err", err)
				fail(http.StatusServiceUnavailable, "unavailable", "try again")
				return
			}
		}
		sets := map[string]string{}
		more := false
		if limit > 0 {
			pend, err := st.PendingSSFTokens(r.Context(), stream.ID, time.Time{}, limit+1)
			if err != nil {
				log.Error("ssf: poll", "stream", stream.ID, "err", err)
				fail(http.StatusServiceUnavailable, "unavailable", "try again")
				return
			}
			if len(pend) > limit {
				pend, more = pend[:limit], true
			}
			for _, t := range pend {
				tok, err := Sign(r.Context(), keys, t.Claims, now())
				if err != nil {
					log.Error("ssf: poll", "stream", stream.ID, "err", err)
					fail(http.StatusServiceUnavailable, "unavailable", "try again")
					return
				}
				sets[t.JTI] = tok
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(map[string]any{"sets": sets, "moreAvailable": more})
	})
}

// pollStream finds the request's poll stream and checks its bearer secret.
func pollStream(r *http.Request, st QueueStore) (store.SSFStream, bool) {
	id := r.PathValue("stream")
	scheme, secret, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if id == "" || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return store.SSFStream{}, false
	}
	streams, err := st.SSFStreams(r.Context())
	if err != nil {
		return store.SSFStream{}, false
	}
	sum := sha256.Sum256([]byte(secret))
	for _, s := range streams {
		if s.ID == id && s.Delivery == "poll" && subtle.ConstantTimeCompare(sum[:], s.PollHash) == 1 {
			return s, true
		}
	}
	return store.SSFStream{}, false
}
