// Package audit is custos's audit log: every security event, encoded as a
// canonical v1 event (docs/spec/audit-event.md), appended to the
// tamper-evident Merkle log of package tlog. It is the event.Sink the
// issuer, custody, accounts and clients emit to, and it answers queries
// over the logged events.
package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/tlog"
)

// Appender is the Merkle log events go into.
type Appender interface {
	Append(ctx context.Context, entry []byte) (uint64, error)
}

// Store is what queries read.
type Store interface {
	tlog.ChunkReader
	LogState(ctx context.Context) (store.LogState, error)
}

// Log routes events into the Merkle log and queries them back.
type Log struct {
	app Appender
	st  Store
	now func() time.Time
}

// New returns the audit log over app, reading back from st. now may be nil
// (time.Now).
func New(app Appender, st Store, now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{app: app, st: st, now: now}
}

var _ event.Sink = (*Log)(nil)

// Emit encodes e and appends it, returning once it is durable. An event
// without an id or time gets a fresh id and the current time.
func (l *Log) Emit(ctx context.Context, e event.Event) error {
	_, err := l.Append(ctx, e)
	return err
}

// Encode returns e as a log entry: the canonical v1 encoding, with a fresh
// id and the current time when e has none. Values the encoding cannot carry
// are cleaned (see sanitize) rather than allowed to cost the event. The
// store appends such entries inside other transactions (a grant and its
// token_issued event), so they are recorded exactly when what they record
// happened.
func (l *Log) Encode(e event.Event) ([]byte, error) {
	if e.ID == "" {
		e.ID = event.NewID()
	}
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	b, err := event.Marshal(e)
	if errors.Is(err, event.ErrInvalid) || errors.Is(err, event.ErrTooLarge) {
		// Values that came from outside (a forged token's claims, a
		// client id as presented) must not cost the event: record them
		// cleaned rather than lose it.
		b, err = event.Marshal(sanitize(e))
	}
	if err != nil {
		return nil, fmt.Errorf("audit: event %s: %w", e.Type, err)
	}
	return b, nil
}

// Append is Emit that also returns the event's index in the log.
func (l *Log) Append(ctx context.Context, e event.Event) (uint64, error) {
	b, err := l.Encode(e)
	if err != nil {
		return 0, err
	}
	idx, err := l.app.Append(ctx, b)
	if err != nil {
		return 0, fmt.Errorf("audit: record %s: %w", e.Type, err)
	}
	return idx, nil
}

// AppendEntry appends an entry from Encode and returns its index once it
// is durable.
func (l *Log) AppendEntry(ctx context.Context, entry []byte) (uint64, error) {
	idx, err := l.app.Append(ctx, entry)
	if err != nil {
		return 0, fmt.Errorf("audit: record: %w", err)
	}
	return idx, nil
}

// Filter selects events. Zero fields match everything.
type Filter struct {
	Since, Until time.Time // Since inclusive, Until exclusive
	Classes      []event.Class
	Types        []string
	Subject      string
	Client       string
	IP           string
	JTI          string // matches field jti and every field named *_jti
	KID          string // matches field kid
	// After skips entries with index < After.
	After uint64
}

func (f Filter) match(e event.Event) bool {
	switch {
	case !f.Since.IsZero() && e.Time.Before(f.Since),
		!f.Until.IsZero() && !e.Time.Before(f.Until),
		len(f.Classes) > 0 && !slices.Contains(f.Classes, e.Class),
		len(f.Types) > 0 && !slices.Contains(f.Types, e.Type),
		f.Subject != "" && e.Subject != f.Subject,
		f.Client != "" && e.Client != f.Client,
		f.IP != "" && e.IP != f.IP,
		f.KID != "" && e.Fields["kid"] != f.KID,
		f.JTI != "" && !hasJTI(e, f.JTI):
		return false
	}
	return true
}

func hasJTI(e event.Event, jti string) bool {
	for k, v := range e.Fields {
		if (k == "jti" || strings.HasSuffix(k, "_jti")) && v == jti {
			return true
		}
	}
	return false
}

// needle is a string every matching entry must contain, used to skip
// entries without decoding them.
func (f Filter) needle() []byte {
	for _, s := range []string{f.JTI, f.KID, f.Subject, f.Client, f.IP} {
		// Only strings that appear verbatim in the canonical encoding.
		if s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == '"' || r == '\\' || r == 0x2028 || r == 0x2029 }) {
			return []byte(s)
		}
	}
	return nil
}

// Record is a logged event and its index.
type Record struct {
	Index uint64
	Event event.Event
}

// ErrStop, returned by a Query callback, ends the query without error.
var ErrStop = errors.New("audit: stop")

// Query calls fn, in log order, for every stored event that f matches.
// Pruned entries are gone and not visited. An entry that does not decode is
// an error: the log is damaged, and `custos audit verify` says where.
func (l *Log) Query(ctx context.Context, f Filter, fn func(Record) error) error {
	state, err := l.st.LogState(ctx)
	if err != nil {
		return err
	}
	needle := f.needle()
	err = tlog.ReadEntries(ctx, l.st, max(state.Pruned, f.After), state.Sequenced, func(idx uint64, raw []byte) error {
		if needle != nil && !bytes.Contains(raw, needle) {
			return nil
		}
		e, err := event.Parse(raw)
		if err != nil {
			return fmt.Errorf("audit: entry %d: %w", idx, err)
		}
		if !f.match(e) {
			return nil
		}
		return fn(Record{Index: idx, Event: e})
	})
	if errors.Is(err, ErrStop) {
		return nil
	}
	return err
}

// Limits for values cleaned by sanitize.
const (
	maxTopLevel = 256
	maxField    = 1024
)

// sanitize returns e with invalid UTF-8 replaced, long strings cut on a
// character boundary, and numbers the encoding cannot carry exactly
// recorded as decimal strings. It marks the event with a "sanitized"
// field so nobody mistakes a cleaned value for the original.
func sanitize(e event.Event) event.Event {
	clean := clipUTF8
	e.Actor, e.Subject = clean(e.Actor, maxTopLevel), clean(e.Subject, maxTopLevel)
	e.Client, e.IP = clean(e.Client, maxTopLevel), clean(e.IP, maxTopLevel)
	fields := make(map[string]any, len(e.Fields)+1)
	for k, v := range e.Fields {
		switch v := v.(type) {
		case string:
			fields[k] = clean(v, maxField)
		case bool:
			fields[k] = v
		case int64:
			fields[k] = safeInt(v)
		case uint64:
			if v > event.MaxSafeInt {
				fields[k] = strconv.FormatUint(v, 10)
			} else {
				fields[k] = int64(v)
			}
		case int:
			fields[k] = safeInt(int64(v))
		case float64:
			fields[k] = strconv.FormatFloat(v, 'g', -1, 64)
		default:
			fields[k] = clean(fmt.Sprint(v), maxField)
		}
	}
	fields["sanitized"] = true
	e.Fields = fields
	return e
}

// clipUTF8 returns s with invalid UTF-8 replaced, cut to at most n bytes
// on a character boundary.
func clipUTF8(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func safeInt(v int64) any {
	if v > event.MaxSafeInt || v < -event.MaxSafeInt {
		return strconv.FormatInt(v, 10)
	}
	return v
}
