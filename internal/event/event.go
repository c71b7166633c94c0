// Package event defines the security events custos emits and the Sink they go
// to. Today the store keeps them in an events table; the tamper-evident audit
// log implements the same Sink, so emitters never change.
package event

import (
	"context"
	"time"
)

// Class groups events for retention and queries.
type Class string

const (
	ClassAuthn Class = "authn"
	ClassToken Class = "token"
	ClassKey   Class = "key"
	ClassAdmin Class = "admin"
	ClassAlert Class = "alert"
)

// Event is one security-relevant fact. It carries identifiers, never secrets
// and never raw tokens: subject ids rather than names or addresses.
type Event struct {
	Time    time.Time
	Class   Class
	Type    string // e.g. "login_failed", "token_issued", "forged_token"
	Actor   string // who acted: a subject, client id, operator or "system"
	Subject string // whose account or data the event is about, if any
	Client  string
	IP      string
	// Fields are class-specific details (jti, kid, reason, ...). Values must
	// be strings, numbers or booleans.
	Fields map[string]any
}

// Sink receives events. Emit returns only once the event is as durable as the
// sink promises; an error means the event was not recorded.
type Sink interface {
	Emit(ctx context.Context, e Event) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, e Event) error

// Emit calls f.
func (f SinkFunc) Emit(ctx context.Context, e Event) error { return f(ctx, e) }
