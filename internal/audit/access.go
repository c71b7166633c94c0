package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"

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
	return l.Emit(ctx, AccessEvent(a))
}

// AccessEvent is the audit event of a guarded request. It names the route
// pattern, not the path, which may carry more than identifiers. A request
// that matched no route records only its path's first segment, its length
// and a digest (to tell probes apart without keeping what they carried).
func AccessEvent(a guard.Access) event.Event {
	typ := EventDataRead
	switch a.Outcome {
	case guard.Refused:
		typ = EventAccessRefused
	case guard.Monitored:
		typ = EventAccessMonitored
	}
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
		head, _, _ := strings.Cut(strings.TrimPrefix(a.Path, "/"), "/")
		sum := sha256.Sum256([]byte(a.Path))
		put("path_head", "/"+clipUTF8(head, maxPathHead))
		put("path_sha256", hex.EncodeToString(sum[:8]))
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
