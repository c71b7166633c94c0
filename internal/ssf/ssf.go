// Package ssf is custos's Shared Signals transmitter: it tells other
// systems — a bank, a CRM, a partner's app — that a customer's session was
// revoked, their password changed, or their account disabled, as Security
// Event Tokens (RFC 8417) with OpenID CAEP and RISC event types, pushed
// (RFC 8935) or polled (RFC 8936).
//
// The transmitter reads the audit log from a position it stores, as the
// detector does, and queues a token per event per stream with the position,
// in one transaction: each event is queued once, and a restart neither
// loses nor repeats one.
package ssf

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/custos-dev/custos/internal/accounts"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/keys"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/tlog"
)

// Event types custos transmits.
const (
	SessionRevoked   = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	CredentialChange = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
	AccountDisabled  = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
)

// EventTypes are every type custos transmits, by short name.
var EventTypes = map[string]string{
	"session-revoked":   SessionRevoked,
	"credential-change": CredentialChange,
	"account-disabled":  AccountDisabled,
}

// TokenType is the typ of a Security Event Token (RFC 8417 §2.3).
const TokenType = "secevent+jwt"

// stateName names the transmitter's position in the store.
const stateName = "ssf-transmitter"

// Store is what the transmitter reads and writes.
type Store interface {
	tlog.ChunkReader
	LogState(ctx context.Context) (store.LogState, error)
	DetectorState(ctx context.Context, name string) (store.DetectorState, error)
	SSFStreams(ctx context.Context) ([]store.SSFStream, error)
	SaveTransmission(ctx context.Context, t store.SSFTransmission) error
}

// Signer gives the key that signs tokens: custody's active signing key,
// published in the issuer's JWKS.
type Signer interface {
	Signer(ctx context.Context) (*keys.SigningKey, error)
}

// Transmitter turns audit events into Security Event Tokens.
type Transmitter struct {
	Store  Store
	Issuer string
	Now    func() time.Time
	Logger *slog.Logger
	// Batch bounds the log entries read at once; 0 means 4,096.
	Batch int
}

func (t *Transmitter) now() time.Time {
	if t.Now == nil {
		return time.Now()
	}
	return t.Now()
}

// Step reads one batch of new log entries and queues their tokens; it
// returns how many entries it read.
func (t *Transmitter) Step(ctx context.Context) (int, error) {
	streams, err := t.Store.SSFStreams(ctx)
	if err != nil {
		return 0, fmt.Errorf("ssf: %w", err)
	}
	if len(streams) == 0 {
		return 0, nil // nobody to tell: each stream starts after its own addition
	}
	ls, err := t.Store.LogState(ctx)
	if err != nil {
		return 0, fmt.Errorf("ssf: %w", err)
	}
	st, err := t.Store.DetectorState(ctx, stateName)
	prev := st.Next
	switch {
	case errors.Is(err, store.ErrNotFound):
		st, prev = store.DetectorState{Name: stateName}, 0
	case err != nil:
		return 0, fmt.Errorf("ssf: %w", err)
	}
	// Nothing before the oldest stream's addition is anybody's.
	floor := streams[0].StartIndex + 1
	for _, s := range streams {
		floor = min(floor, s.StartIndex+1)
	}
	from := max(st.Next, floor)
	if ls.Pruned > from {
		t.logger().Warn("ssf: entries pruned before they were read", "from", from, "to", ls.Pruned)
		from = ls.Pruned
	}
	batch := uint64(t.Batch)
	if batch == 0 {
		batch = 4096
	}
	to := min(ls.Sequenced, from+batch)
	if to <= from {
		return 0, nil
	}
	var toks []store.SSFToken
	read := func(idx uint64, raw []byte) error {
		e, err := event.Decode(raw)
		if err != nil {
			return nil // audit verify reports damage
		}
		typ, detail, ok := signal(e)
		if !ok {
			return nil
		}
		for _, s := range streams {
			if !slices.Contains(s.Events, typ) || idx <= s.StartIndex {
				continue
			}
			jti, claims, err := t.claims(s, e, typ, detail)
			if err != nil {
				return err
			}
			now := t.now()
			toks = append(toks, store.SSFToken{StreamID: s.ID, JTI: jti, Claims: claims, CreatedAt: now, NextAt: now})
		}
		return nil
	}
	if err := tlog.ReadEntries(ctx, t.Store, from, to, read); err != nil {
		return 0, fmt.Errorf("ssf: read the log [%d, %d): %w", from, to, err)
	}
	next := store.DetectorState{Name: stateName, Next: to, Warm: to, UpdatedAt: t.now()}
	err = t.Store.SaveTransmission(ctx, store.SSFTransmission{State: next, PrevNext: prev, Tokens: toks})
	if errors.Is(err, store.ErrConflict) {
		return 0, nil // another process transmitted this batch
	}
	if err != nil {
		return 0, fmt.Errorf("ssf: %w", err)
	}
	return int(to - from), nil
}

// Run transmits until ctx ends, every interval once caught up.
func (t *Transmitter) Run(ctx context.Context, interval time.Duration) {
	failing := false
	for {
		n, err := t.Step(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			t.logger().Error("ssf: transmission stalled; retrying", "err", err)
			failing = true
		case err == nil:
			failing = false
		}
		if n > 0 && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (t *Transmitter) logger() *slog.Logger {
	if t.Logger == nil {
		return slog.Default()
	}
	return t.Logger
}

// signal maps an audit event to the token it becomes, if any: its type and
// the event's own claims.
func signal(e event.Event) (typ string, detail map[string]any, ok bool) {
	switch e.Type {
	case "session_ended":
		return SessionRevoked, map[string]any{"initiating_entity": "user", "reason_admin": map[string]string{"en": "signed out"}}, e.Subject != ""
	case "refresh_reused", "code_replayed":
		return SessionRevoked, map[string]any{"initiating_entity": "policy", "reason_admin": map[string]string{"en": "a spent token was presented again; its family is revoked"}}, e.Subject != ""
	case accounts.EventPasswordChanged:
		return CredentialChange, map[string]any{"credential_type": "password", "change_type": "update", "initiating_entity": "user"}, e.Subject != ""
	case accounts.EventPasswordSet:
		return CredentialChange, map[string]any{"credential_type": "password", "change_type": "update", "initiating_entity": "admin"}, e.Subject != ""
	case accounts.EventAccountDisabled:
		return AccountDisabled, map[string]any{}, e.Subject != ""
	case "alert_response":
		if e.Fields["action"] == "force_relogin" {
			return SessionRevoked, map[string]any{"initiating_entity": "policy", "reason_admin": map[string]string{"en": "a detection rule revoked every session"}}, e.Subject != ""
		}
	}
	return "", nil, false
}

// claims are the claims of the token for e on stream s, JSON.
func (t *Transmitter) claims(s store.SSFStream, e event.Event, typ string, detail map[string]any) (string, []byte, error) {
	var b [16]byte
	rand.Read(b[:])
	jti := base64.RawURLEncoding.EncodeToString(b[:])
	detail["event_timestamp"] = e.Time.Unix()
	subID := map[string]any{"format": "iss_sub", "iss": t.Issuer, "sub": e.Subject}
	if sid, _ := e.Fields["sid"].(string); sid != "" && typ == SessionRevoked {
		subID = map[string]any{"format": "complex", "user": subID, "session": map[string]any{"format": "opaque", "id": sid}}
	}
	claims, err := json.Marshal(map[string]any{
		"iss": t.Issuer, "aud": s.Audience, "jti": jti,
		"sub_id": subID,
		"txn":    e.ID, // the audit event it records: the same in every stream's token
		"events": map[string]any{typ: detail},
	})
	return jti, claims, err
}

// Sign signs a queued token's claims, with iat now, with the key active
// now: a token that waited through a key rotation is still signed with a
// published key.
func Sign(ctx context.Context, keys Signer, claims []byte, now time.Time) (string, error) {
	var c map[string]any
	if err := json.Unmarshal(claims, &c); err != nil {
		return "", fmt.Errorf("ssf: queued claims: %w", err)
	}
	c["iat"] = now.Unix()
	sk, err := keys.Signer(ctx)
	if err != nil {
		return "", fmt.Errorf("ssf: signing key: %w", err)
	}
	return keysSignJWT(sk, c)
}

// Configuration is the transmitter's metadata (SSF 1.0 §7.1), served at
// /.well-known/ssf-configuration.
func Configuration(issuer, jwksURI, pollEndpoint string) map[string]any {
	return map[string]any{
		"spec_version":               "1_0",
		"issuer":                     issuer,
		"jwks_uri":                   jwksURI,
		"delivery_methods_supported": []string{"urn:ietf:rfc:8935", "urn:ietf:rfc:8936"},
		// Streams are registered by custos's operators (custos ssf add);
		// no stream management endpoint is offered.
		"ssf_poll_endpoint_template": pollEndpoint,
		"events_supported":           []string{SessionRevoked, CredentialChange, AccountDisabled},
	}
}

func keysSignJWT(sk *keys.SigningKey, claims map[string]any) (string, error) {
	return keys.SignJWT(sk, TokenType, claims)
}
