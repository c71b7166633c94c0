package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/flock"
	"github.com/custos-dev/custos/internal/issuer"
	"github.com/custos-dev/custos/internal/ssf"
	"github.com/custos-dev/custos/internal/store"
)

// SSFStreamSpec is a Shared Signals receiver to register.
type SSFStreamSpec struct {
	ID       string
	Audience string
	// Push is the receiver's URL for push delivery (RFC 8935); empty for
	// poll (RFC 8936).
	Push string
	// AuthEnv names the environment variable holding the Authorization
	// header push sends.
	AuthEnv string
	// Events are short names (ssf.EventTypes); none means all.
	Events []string
}

// SSF paths.
const (
	PathSSFConfiguration = "/.well-known/ssf-configuration"
	PathSSFPoll          = "/ssf/poll/"
)

var (
	streamID = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	envName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// Shared Signals event types in the audit log (class admin).
const (
	EventSSFStreamAdded   = "ssf_stream_added"
	EventSSFStreamRemoved = "ssf_stream_removed"
)

// AddSSFStream registers a receiver. For a poll stream it returns the
// bearer secret the receiver polls with: shown once, stored hashed.
func (n *Node) AddSSFStream(ctx context.Context, spec SSFStreamSpec, actor string) (secret string, err error) {
	if !streamID.MatchString(spec.ID) {
		return "", fmt.Errorf("stream id %q: want [a-z0-9][a-z0-9_-]{0,63}", spec.ID)
	}
	if spec.Audience == "" || len(spec.Audience) > 512 {
		return "", fmt.Errorf("stream %s: an audience (the receiver's identifier, 1 to 512 bytes) is required", spec.ID)
	}
	st := store.SSFStream{ID: spec.ID, Audience: spec.Audience, CreatedAt: now(n.cfg)}
	if len(spec.Events) == 0 {
		spec.Events = []string{"session-revoked", "credential-change", "account-disabled"}
	}
	for _, name := range spec.Events {
		uri, ok := ssf.EventTypes[name]
		if !ok {
			return "", fmt.Errorf("stream %s: unknown event %q (want session-revoked, credential-change or account-disabled)", spec.ID, name)
		}
		if !slices.Contains(st.Events, uri) {
			st.Events = append(st.Events, uri)
		}
	}
	if spec.Push != "" {
		u, err := url.Parse(spec.Push)
		if err != nil || u.Host == "" || u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
			return "", fmt.Errorf("stream %s: push URL: want https (or http to a loopback address)", spec.ID)
		}
		if u.User != nil {
			return "", fmt.Errorf("stream %s: push URL: no credentials in the URL; give the Authorization header with an environment variable", spec.ID)
		}
		if spec.AuthEnv != "" && !envName.MatchString(spec.AuthEnv) {
			return "", fmt.Errorf("stream %s: %q is not an environment variable name", spec.ID, spec.AuthEnv)
		}
		st.Delivery, st.Endpoint, st.AuthEnv = "push", spec.Push, spec.AuthEnv
	} else {
		if spec.AuthEnv != "" {
			return "", fmt.Errorf("stream %s: an authorization variable is for push streams", spec.ID)
		}
		secret = rand.Text() + rand.Text()
		sum := sha256.Sum256([]byte(secret))
		st.Delivery, st.PollHash = "poll", sum[:]
	}
	ev, err := n.Audit.Encode(event.Event{Class: event.ClassAdmin, Type: EventSSFStreamAdded, Actor: actor, Fields: map[string]any{
		"stream": st.ID, "audience": st.Audience, "delivery": st.Delivery, "events": strings.Join(spec.Events, " "),
	}})
	if err != nil {
		return "", err
	}
	if err := n.Store.AddSSFStream(ctx, st, ev); err != nil {
		return "", err
	}
	return secret, nil
}

// RemoveSSFStream stops sending to a receiver.
func (n *Node) RemoveSSFStream(ctx context.Context, id, actor string) error {
	ev, err := n.Audit.Encode(event.Event{Class: event.ClassAdmin, Type: EventSSFStreamRemoved, Actor: actor, Fields: map[string]any{"stream": id}})
	if err != nil {
		return err
	}
	return n.Store.RemoveSSFStream(ctx, id, now(n.cfg), ev)
}

// runSSF transmits and pushes Security Event Tokens until ctx ends. One
// process per data directory does: a lock file.
func (n *Node) runSSF(ctx context.Context) {
	unlock, err := flock.Lock(filepath.Join(n.cfg.DataDir, "ssf.lock"))
	if errors.Is(err, flock.ErrHeld) {
		return // another process on the data directory transmits
	}
	if err != nil {
		n.log.Error("ssf: not transmitting", "err", err)
		return
	}
	defer unlock()
	t := &ssf.Transmitter{Store: n.Store, Issuer: n.cfg.Issuer, Now: n.cfg.Issuance.Now, Logger: n.log}
	p := &ssf.Pusher{Store: n.Store, Keys: n.Custody, Now: n.cfg.Issuance.Now, Logger: n.log}
	pushed := make(chan struct{})
	go func() { p.Run(ctx, 500*time.Millisecond); close(pushed) }()
	t.Run(ctx, 200*time.Millisecond)
	<-pushed
}

// ssfConfiguration serves the transmitter's metadata.
func (n *Node) ssfConfiguration() map[string]any {
	return ssf.Configuration(n.cfg.Issuer, n.cfg.Issuer+issuer.PathJWKS, n.cfg.Issuer+PathSSFPoll+"{stream}")
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1" || strings.HasPrefix(host, "127.")
}

// queueRetention is how long delivered alerts and security event tokens,
// and the queues of removed streams, are kept before they are pruned.
const queueRetention = 7 * 24 * time.Hour

// pruneQueues prunes the alert deliveries and security event tokens done
// with, every hour until ctx ends.
func (n *Node) pruneQueues(ctx context.Context) {
	for {
		before := now(n.cfg).Add(-queueRetention)
		if _, err := n.Store.PruneDeliveries(ctx, before); err != nil && ctx.Err() == nil {
			n.log.Warn("pruning alert deliveries", "err", err)
		}
		if _, err := n.Store.PruneSSFTokens(ctx, before); err != nil && ctx.Err() == nil {
			n.log.Warn("pruning security event tokens", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
	}
}
