package audit

import (
	"bytes"
	"testing"
	"time"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/verify"
)

// TestEncodeAccessSameBytes checks that the access event encoded from its
// field list is, byte for byte, the event AccessEvent builds, encoded.
func TestEncodeAccessSameBytes(t *testing.T) {
	at := time.Date(2026, 5, 23, 9, 30, 0, 123456000, time.UTC)
	now := func() time.Time { return at.Add(time.Hour) }
	for name, a := range map[string]guard.Access{
		"forwarded": {Time: at, Outcome: guard.Forwarded, Mode: guard.Enforce, Method: "GET", Route: "GET /me/orders", Path: "/me/orders",
			Subject: "acc_1", DataSubject: "acc_1", ClientID: "shop", ClientIP: "192.0.2.7", JTI: "j1", KeyID: "k1",
			SessionID: "s1", UserAgent: "Mozilla/5.0 \"x\"", Data: []guard.Category{"name", "address"}, Status: 200, Size: 512},
		"staff": {Time: at, Outcome: guard.Forwarded, Method: "GET", Route: "GET /customers/{id}/orders", Subject: "support",
			DataSubject: "acc_9", ClientID: "support", Purpose: "ticket 4521", Status: 200, Size: 0},
		"refused": {Time: at, Outcome: guard.Refused, Mode: guard.Enforce, Method: "GET", Route: "GET /me/orders",
			Reason: verify.ReasonForged, KeyID: "legacy", IssuedAt: at.Add(-24 * time.Hour), Status: 401},
		"summary": {Time: at, Outcome: guard.Refused, Reason: guard.ReasonRateLimited, ClientIP: "198.51.100.1",
			Count: 37, Window: time.Minute, Status: 429},
		"unmatched": {Time: at, Outcome: guard.Refused, Method: "POST", Path: "/admin/역할/../x", Reason: guard.ReasonNoRoute, Status: 404},
		"monitored": {Outcome: guard.Monitored, Mode: guard.Monitor, Method: "GET", Route: "GET /me/profile",
			Reason: guard.ReasonSubjectMismatch, Status: 200, Size: 77},
	} {
		got, err := encodeAccess(a, "0123456789abcdef0123456789abcdef", now)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		e := AccessEvent(a)
		e.ID = "0123456789abcdef0123456789abcdef"
		if e.Time.IsZero() {
			e.Time = now()
		}
		want, err := event.Marshal(e)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
	// A value the encoding cannot carry goes the way Encode takes it.
	l := New(nil, nil, now)
	b, err := l.EncodeAccess(guard.Access{Time: at, Route: "GET /x", UserAgent: "bad \xff", Status: 200})
	if err != nil || !bytes.Contains(b, []byte(`"user_agent"`)) {
		t.Fatalf("EncodeAccess with invalid UTF-8 = %s, %v", b, err)
	}
}
