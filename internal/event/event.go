// Package event defines the security events custos emits, the Sink they go
// to, and their canonical byte encoding.
//
// Every event is recorded as one entry of the tamper-evident audit log, so
// an event has exactly one encoding that anyone can re-derive and check:
// Marshal produces it and Parse accepts nothing else. The encoding is
// specified in docs/spec/audit-event.md (version 1); entries once written
// keep their version forever, because their bytes are hashed into the log.
package event

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"
)

// Class groups events for retention and queries.
type Class string

// The event classes. The list is closed: Marshal refuses any other class.
const (
	ClassAuthn    Class = "authn"    // sign-in, sessions, client authentication
	ClassToken    Class = "token"    // issuance, revocation, replay, forgery
	ClassKey      Class = "key"      // signing- and note-key lifecycle
	ClassAdmin    Class = "admin"    // operators changing accounts, clients, settings
	ClassAlert    Class = "alert"    // detection rules firing
	ClassAccess   Class = "access"   // reads of personal data through the guard
	ClassIncident Class = "incident" // incident handling: awareness, scope, reports, notices
	ClassAudit    Class = "audit"    // the audit log's own events: prune, hold, retention
)

// Classes returns every known class, in a fixed order. The slice is the
// caller's to keep.
func Classes() []Class {
	return []Class{ClassAuthn, ClassToken, ClassKey, ClassAdmin, ClassAlert, ClassAccess, ClassIncident, ClassAudit}
}

// Valid reports whether c is one of the known classes.
func (c Class) Valid() bool {
	switch c {
	case ClassAuthn, ClassToken, ClassKey, ClassAdmin, ClassAlert, ClassAccess, ClassIncident, ClassAudit:
		return true
	}
	return false
}

// Event is one security-relevant fact. It carries identifiers, never secrets
// and never raw tokens: subject ids rather than names or addresses.
type Event struct {
	// ID identifies the event; NewID makes one. Emitters may leave it
	// empty, in which case the sink that records the event assigns one
	// before encoding it (Marshal refuses an empty ID).
	ID      string
	Time    time.Time
	Class   Class
	Type    string // e.g. "login_failed", "token_issued", "forged_token"
	Actor   string // who acted: a subject, client id, operator or "system"
	Subject string // whose account or data the event is about, if any
	Client  string
	IP      string
	// Fields are class-specific details (jti, kid, reason, ...). Keys match
	// [a-z0-9_]{1,64}; values are strings, booleans or integers within
	// ±(2^53-1) (see Marshal).
	Fields map[string]any
}

// NewID returns a fresh event id: 128 bits from crypto/rand as 32 lowercase
// hexadecimal characters.
func NewID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails: crypto/rand.Read crashes the program instead
	return hex.EncodeToString(b[:])
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
