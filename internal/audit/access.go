package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/event"
)

// Access event types (class access; docs/spec/audit-event.md §11).
const (
	EventDataRead        = "data_read"        // forwarded: every check passed
	EventAccessRefused   = "access_refused"   // refused, with its reason
	EventAccessMonitored = "access_monitored" // a check failed on a monitor route; forwarded
)

// maxPathHead bounds the first segment recorded of a path that matched no
// route.
const maxPathHead = 64

var _ guard.Recorder = (*Log)(nil)

// Record makes a guard's access event durable: it returns once the event
// is in the log.
func (l *Log) Record(ctx context.Context, a guard.Access) error {
	entry, err := l.EncodeAccess(a)
	if err != nil {
		return err
	}
	_, err = l.AppendEntry(ctx, entry)
	return err
}

// EncodeAccess is Encode(AccessEvent(a)), the same bytes, without building
// the event's field map: a guard encodes one per request.
func (l *Log) EncodeAccess(a guard.Access) ([]byte, error) {
	b, err := encodeAccess(a, event.NewID(), l.now)
	if err != nil {
		// What Encode does with values it cannot carry.
		return l.Encode(AccessEvent(a))
	}
	return b, nil
}

// encodeAccess encodes AccessEvent(a) with id, and the time now() if a has
// none, its fields listed in ascending order of key.
func encodeAccess(a guard.Access, id string, now func() time.Time) ([]byte, error) {
	e := event.Event{
		ID: id, Time: a.Time, Class: event.ClassAccess, Type: accessType(a.Outcome),
		Actor: a.Subject, Subject: a.DataSubject, Client: a.ClientID, IP: a.ClientIP,
	}
	if e.Time.IsZero() {
		e.Time = now()
	}
	var arr [18]event.Field
	f := arr[:0]
	str := func(k, v string) {
		if v != "" {
			f = append(f, event.String(k, v))
		}
	}
	if a.Count > 0 {
		f = append(f, event.Int("count", int64(a.Count)))
	}
	if len(a.Data) > 0 {
		cats := make([]string, len(a.Data))
		for i, c := range a.Data {
			cats[i] = string(c)
		}
		f = append(f, event.String("data", strings.Join(cats, " ")))
	}
	if !a.IssuedAt.IsZero() {
		f = append(f, event.Int("iat", a.IssuedAt.Unix()))
	}
	str("jti", a.JTI)
	str("kid", a.KeyID)
	str("method", a.Method)
	f = append(f, event.String("mode", a.Mode.String()))
	if a.Route == "" && a.Path != "" {
		head, sum := pathHead(a.Path)
		f = append(f, event.Int("path_bytes", int64(len(a.Path))))
		str("path_head", head)
		str("path_sha256", sum)
	}
	str("purpose", a.Purpose)
	str("reason", string(a.Reason))
	str("route", a.Route)
	str("sid", a.SessionID)
	if a.Outcome != guard.Refused {
		f = append(f, event.Int("size", a.Size))
	}
	f = append(f, event.Int("status", int64(a.Status)))
	str("user_agent", a.UserAgent)
	if a.Count > 0 {
		f = append(f, event.Int("window_ms", a.Window.Milliseconds()))
	}
	return event.AppendList(nil, e, f...)
}

// accessType is the type of an access event with outcome o.
func accessType(o guard.Outcome) string {
	switch o {
	case guard.Refused:
		return EventAccessRefused
	case guard.Monitored:
		return EventAccessMonitored
	}
	return EventDataRead
}

// pathHead returns what an access event records of a path that matched no
// route: its first segment, clipped, and a digest.
func pathHead(path string) (head, digest string) {
	first, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	sum := sha256.Sum256([]byte(path))
	return "/" + clipUTF8(first, maxPathHead), hex.EncodeToString(sum[:8])
}

// AccessEvent is the audit event of a guarded request. It names the route
// pattern, not the path, which may carry more than identifiers. A request
// that matched no route records only its path's first segment, its length
// and a digest (to tell probes apart without keeping what they carried).
func AccessEvent(a guard.Access) event.Event {
	typ := accessType(a.Outcome)
	f := make(map[string]any, 12) // room for every field, without growing
	f["mode"], f["status"] = a.Mode.String(), int64(a.Status)
	put := func(k, v string) {
		if v != "" {
			f[k] = v
		}
	}
	put("method", a.Method)
	put("route", a.Route)
	if a.Count > 0 {
		// A summary of refusals past the IP's budget.
		f["count"] = int64(a.Count)
		f["window_ms"] = a.Window.Milliseconds()
	}
	if a.Route == "" && a.Path != "" {
		head, sum := pathHead(a.Path)
		put("path_head", head)
		put("path_sha256", sum)
		f["path_bytes"] = int64(len(a.Path))
	}
	put("reason", string(a.Reason))
	put("jti", a.JTI)
	put("kid", a.KeyID)
	put("sid", a.SessionID)
	if !a.IssuedAt.IsZero() {
		f["iat"] = a.IssuedAt.Unix()
	}
	put("purpose", a.Purpose)
	put("user_agent", a.UserAgent)
	if len(a.Data) > 0 {
		cats := make([]string, len(a.Data))
		for i, c := range a.Data {
			cats[i] = string(c)
		}
		f["data"] = strings.Join(cats, " ")
	}
	if a.Outcome != guard.Refused {
		f["size"] = a.Size
	}
	return event.Event{
		Time: a.Time, Class: event.ClassAccess, Type: typ,
		Actor: a.Subject, Subject: a.DataSubject, Client: a.ClientID, IP: a.ClientIP,
		Fields: f,
	}
}
