package detect

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/lru"
	"github.com/custos-dev/custos/verify"
)

var sessionParams = map[string]string{
	// How many sessions it remembers; the least recently used are
	// forgotten first.
	"sessions": "1000000",
}

// sessionOriginRule fires when personal data left the guard (on a monitor
// route) for a token that did not verify and names a session no sign-in
// or refresh in the log started: the token was made, not issued. A token
// that verified has a receipt, so its session is real by construction;
// only the reads monitor let through are looked at.
var sessionOriginRule = codeRule{
	doc:    "personal data read in a session no sign-in or refresh started",
	params: sessionParams,
	check: func(params map[string]string) error {
		return checkParams(params, sessionParams, func(name, v string) error {
			if n, err := strconv.Atoi(v); err != nil || n < 1000 || n > 10_000_000 {
				return errors.New("want a number from 1000 to 10000000")
			}
			return nil
		})
	},
	start: func(r *Rule) (evaluator, error) {
		n, err := strconv.Atoi(param(r, sessionParams, "sessions"))
		if err != nil {
			return nil, err
		}
		return &sessionOrigin{seen: lru.New[string, struct{}](n), size: n}, nil
	},
}

// tokenReasons are the refusals of a token itself: a monitored read with
// one of them was forwarded without a verified token.
var tokenReasons = map[string]bool{}

func init() {
	for _, r := range []verify.Reason{
		verify.ReasonForged, verify.ReasonRevoked, verify.ReasonExpired, verify.ReasonNotYetValid,
		verify.ReasonLifetime, verify.ReasonUnknownKey, verify.ReasonRevokedKey, verify.ReasonSignature,
		verify.ReasonAudience, verify.ReasonIssuer, verify.ReasonClaims, verify.ReasonType,
	} {
		tokenReasons[string(r)] = true
	}
}

type sessionOrigin struct {
	seen *lru.Map[string, struct{}]
	size int
}

// seed learns the sessions whose tokens are alive: they began before
// anything a restart re-reads.
func (s *sessionOrigin) seed(ctx context.Context, st Store, now time.Time) error {
	sids, err := st.ActiveSessions(ctx, now, s.size)
	if err != nil {
		return fmt.Errorf("sessions: %w", err)
	}
	for _, sid := range sids {
		s.seen.Put(sid, struct{}{})
	}
	return nil
}

func (s *sessionOrigin) feed(e *event.Event) (string, bool) {
	sid, _ := e.Fields["sid"].(string)
	if sid == "" {
		return "", false
	}
	switch e.Type {
	case "session_started", "token_issued":
		s.seen.Put(sid, struct{}{})
		return "", false
	case "access_monitored":
		reason, _ := e.Fields["reason"].(string)
		if !tokenReasons[reason] {
			return "", false
		}
		if _, ok := s.seen.Get(sid); ok {
			return "", false
		}
		return e.Client, true
	}
	return "", false
}
