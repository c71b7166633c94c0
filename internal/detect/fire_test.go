package detect

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/event"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// ev builds an event: class/type, then members and fields as key, value
// pairs (actor, subject, client, ip are members; the rest are fields).
func ev(at time.Duration, class event.Class, typ string, kv ...any) event.Event {
	e := event.Event{Time: t0.Add(at), Class: class, Type: typ, Fields: map[string]any{}}
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		switch k {
		case "actor":
			e.Actor = kv[i+1].(string)
		case "subject":
			e.Subject = kv[i+1].(string)
		case "client":
			e.Client = kv[i+1].(string)
		case "ip":
			e.IP = kv[i+1].(string)
		default:
			e.Fields[k] = kv[i+1]
		}
	}
	return e
}

// feed runs the named default rule over events and returns, per event,
// whether it fired ("." no, "!" yes) and the groups it fired for.
func feed(t *testing.T, name string, events []event.Event) (string, []string) {
	t.Helper()
	var r *Rule
	for _, x := range DefaultRules().Rules {
		if x.Name == name {
			r = x
		}
	}
	if r == nil {
		t.Fatalf("no default rule %s", name)
	}
	ev, err := newEvaluator(r)
	if err != nil {
		t.Fatal(err)
	}
	marks := make([]byte, len(events))
	var groups []string
	for i := range events {
		g, fire := ev.feed(&events[i])
		marks[i] = '.'
		if fire {
			marks[i] = '!'
			groups = append(groups, g)
		}
	}
	return string(marks), groups
}

// read is a guard's data_read event.
func read(at time.Duration, reader, subject, ip string, data string) event.Event {
	return ev(at, event.ClassAccess, "data_read", "actor", reader, "subject", subject, "client", "shop-app", "ip", ip,
		"user_agent", "shop/1.0", "data", data, "status", int64(200), "route", "GET /me/profile", "kid", "kid-active")
}

// ordinary is a day's ordinary traffic of n customers: each signs in
// (sometimes mistyping the password once), refreshes, and reads their
// own data a few times, from their own IP.
func ordinary(n int) []event.Event {
	var out []event.Event
	for i := range n {
		at := time.Duration(i) * 7 * time.Second
		acc, ip := fmt.Sprintf("acc_%d", i), fmt.Sprintf("198.51.100.%d", i%250)
		if i%5 == 0 {
			out = append(out, ev(at, event.ClassAuthn, "login_failed", "actor", acc, "subject", acc, "ip", ip, "reason", "bad_password"))
		}
		reads := []event.Event{
			read(at+3*time.Second, acc, acc, ip, "name email phone"),
			read(at+4*time.Second, acc, acc, ip, "address entrance_code third_party_address"),
			read(at+5*time.Second, acc, acc, ip, "order_history"),
		}
		for i := range reads {
			reads[i].Fields["sid"] = "sid-" + acc
		}
		out = append(out,
			ev(at+time.Second, event.ClassAuthn, "login_succeeded", "actor", acc, "subject", acc, "ip", ip),
			ev(at+2*time.Second, event.ClassToken, "token_issued", "actor", "shop-app", "subject", acc, "client", "shop-app", "ip", ip, "kid", "kid-active", "sid", "sid-"+acc),
		)
		out = append(out, reads...)
	}
	return out
}

// Ordinary customers' traffic fires no rule.
func TestOrdinaryTrafficFiresNothing(t *testing.T) {
	events := append([]event.Event{
		ev(0, event.ClassKey, "key_created", "actor", "system", "kid", "kid-active", "custodian", "system"),
		ev(0, event.ClassKey, "key_activated", "actor", "system", "kid", "kid-active", "custodian", "system"),
		ev(0, event.ClassAdmin, "guard_started", "actor", "ops", "monitored", "", "default_mode", "enforce", "upstream", "shop"),
		// An operator who held no key in use leaves.
		ev(0, event.ClassKey, "custodian_offboarded", "actor", "ops", "custodian", "cli:erin", "keys", 0, "revoked", 0),
	}, ordinary(2000)...)
	for _, r := range DefaultRules().Rules {
		if marks, groups := feed(t, r.Name, events); len(groups) > 0 {
			t.Errorf("rule %s fired %d times on ordinary traffic, first for %q", r.Name, len(groups), groups[0])
			_ = marks
		}
	}
}

func TestRulesFire(t *testing.T) {
	s := time.Second
	tests := []struct {
		rule   string
		events []event.Event
		marks  string
		group  string
	}{
		{"forged_token", []event.Event{
			ev(0, event.ClassAccess, "access_refused", "reason", "forged_token", "kid", "kid-legacy", "ip", "203.0.113.9"),
			ev(s, event.ClassAccess, "access_monitored", "reason", "forged_token", "kid", "kid-legacy"),
			ev(2*s, event.ClassToken, "forged_token", "kid", "kid-legacy", "where", "introspection"),
			ev(3*s, event.ClassAccess, "access_refused", "reason", "bad_signature"),
		}, "!!!.", "kid-legacy"},
		{"revoked_key_used", []event.Event{
			ev(0, event.ClassAccess, "access_refused", "reason", "revoked_key", "ip", "203.0.113.9"),
			ev(s, event.ClassAccess, "access_refused", "reason", "unknown_kid", "ip", "203.0.113.9"),
		}, "!.", "203.0.113.9"},
		{"key_misuse", []event.Event{
			ev(0, event.ClassKey, "key_imported", "kid", "kid-legacy", "imported", true),
			ev(0, event.ClassKey, "key_retired", "kid", "kid-old"),
			read(s, "acc_1", "acc_1", "198.51.100.1", "name"),                                                        // the active key
			ev(2*s, event.ClassAccess, "data_read", "kid", "kid-old"),                                                // within the grace
			ev(20*time.Minute, event.ClassAccess, "data_read", "kid", "kid-old"),                                     // past it
			ev(21*time.Minute, event.ClassAccess, "access_monitored", "kid", "kid-legacy", "reason", "forged_token"), // imported
			ev(22*time.Minute, event.ClassKey, "key_created", "kid", "kid-new"),
			ev(23*time.Minute, event.ClassAccess, "access_refused", "kid", "kid-new", "reason", "forged_token", "iat", t0.Add(-time.Hour).Unix()),                    // before the key
			ev(24*time.Minute, event.ClassAccess, "access_refused", "kid", "kid-new", "reason", "forged_token", "iat", t0.Add(22*time.Minute-30*time.Second).Unix()), // within the leeway
			ev(25*time.Minute, event.ClassToken, "forged_token", "kid", "kid-new", "iat", t0.Add(10*time.Minute).Unix()),                                             // before the key, at introspection
			ev(26*time.Minute, event.ClassAccess, "access_refused", "kid", "kid-new", "reason", "revoked_token", "iat", t0.Add(23*time.Minute).Unix()),               // after it
		}, "....!!.!.!.", "kid-old"},
		{"offboarded_custodian_key", []event.Event{
			ev(0, event.ClassKey, "key_imported", "kid", "kid-legacy", "custodian", "cli:dana", "imported", true),
			ev(0, event.ClassKey, "key_created", "kid", "kid-new", "custodian", "system"),
			ev(s, event.ClassAccess, "data_read", "kid", "kid-legacy"),                                        // dana still works here
			ev(2*s, event.ClassKey, "custodian_offboarded", "custodian", "cli:dana", "keys", 1, "revoked", 0), // she leaves
			ev(3*s, event.ClassAccess, "data_read", "kid", "kid-new"),                                         // another custodian's key
			ev(4*s, event.ClassToken, "token_issued", "kid", "kid-legacy"),                                    // not a token presented
			ev(5*s, event.ClassAccess, "access_refused", "kid", "kid-legacy", "reason", "revoked_key"),        // her key, refused
			ev(6*s, event.ClassToken, "forged_token", "kid", "kid-legacy"),                                    // her key, at introspection
			ev(7*s, event.ClassAccess, "access_monitored", "kid", "kid-unknown", "reason", "unknown_kid"),     // a key nobody held
		}, "......!!.", "kid-legacy"},
		{"session_without_sign_in", []event.Event{
			ev(0, event.ClassAuthn, "session_started", "sid", "sid-real"),
			ev(s, event.ClassAccess, "access_monitored", "reason", "forged_token", "sid", "sid-real", "client", "shop-app"),        // a real session
			ev(2*s, event.ClassAccess, "access_monitored", "reason", "forged_token", "sid", "sid-made-up", "client", "shop-app"),   // a made-up one
			ev(3*s, event.ClassAccess, "access_monitored", "reason", "subject_mismatch", "sid", "sid-other", "client", "shop-app"), // verified
			ev(4*s, event.ClassAccess, "data_read", "sid", "sid-other", "client", "shop-app"),                                      // verified
		}, "..!..", "shop-app"},
		{"reads_above_baseline", func() []event.Event {
			var out []event.Event
			// A week of 5 reads an hour, then 300 in one hour.
			for h := range 7 * 24 {
				for i := range 5 {
					out = append(out, read(time.Duration(h)*time.Hour+time.Duration(i)*time.Minute, "acc_1", "acc_1", "198.51.100.1", "name"))
				}
			}
			for i := range 300 {
				out = append(out, read(7*24*time.Hour+time.Duration(i)*time.Second, "acc_1", "acc_1", "198.51.100.1", "name"))
			}
			return out
		}(), strings.Repeat(".", 7*24*5+199) + strings.Repeat("!", 101), "acc_1"},
		{"token_shape", []event.Event{
			ev(0, event.ClassAccess, "access_monitored", "reason", "lifetime", "client", "shop-app"),
			ev(s, event.ClassAccess, "access_refused", "reason", "not_yet_valid", "client", "shop-app"),
			ev(2*s, event.ClassAccess, "access_refused", "reason", "expired", "client", "shop-app"),
		}, "!!.", "shop-app"},
		{"many_customers_one_fingerprint", func() []event.Event {
			var out []event.Event
			for i := range 25 {
				out = append(out, read(time.Duration(i)*s, fmt.Sprintf("acc_%d", i), fmt.Sprintf("acc_%d", i), "203.0.113.9", "name"))
			}
			return out
		}(), "...................!!!!!!", "203.0.113.9 shop-app shop/1.0"},
		{"many_customers_one_session", func() []event.Event {
			var out []event.Event
			for i := range 22 {
				// One stolen session's token, from a new address each time.
				e := read(time.Duration(i)*s, "acc_thief", fmt.Sprintf("acc_%d", i), fmt.Sprintf("203.0.113.%d", i), "name")
				e.Fields["sid"] = "sid-stolen"
				out = append(out, e)
			}
			staff := read(30*s, "svc-support", "acc_1", "198.51.100.7", "name") // no session: staff tooling
			return append(out, staff)
		}(), "...................!!!.", "sid-stolen"},
		{"cross_account_attempts", []event.Event{
			ev(0, event.ClassAccess, "access_refused", "actor", "acc_1", "subject", "acc_2", "reason", "subject_mismatch"),
			ev(s, event.ClassAccess, "access_refused", "actor", "acc_1", "subject", "acc_3", "reason", "subject_mismatch"),
			ev(2*s, event.ClassAccess, "access_refused", "actor", "acc_9", "subject", "acc_3", "reason", "subject_mismatch"),
			ev(3*s, event.ClassAccess, "access_refused", "actor", "acc_1", "subject", "acc_4", "reason", "subject_mismatch"),
		}, "...!", "acc_1"},
		{"bulk_sensitive_reads", func() []event.Event {
			var out []event.Event
			for i := range 22 {
				e := read(time.Duration(i)*s, "op_park", fmt.Sprintf("acc_%d", i), "192.0.2.5", "address entrance_code")
				if i%2 == 1 {
					e = read(time.Duration(i)*s, "op_park", fmt.Sprintf("acc_%d", i), "192.0.2.5", "name third_party_address")
				}
				out = append(out, e)
			}
			out = append(out, read(30*s, "op_park", "acc_99", "192.0.2.5", "order_history")) // not sensitive
			return out
		}(), "...................!!!.", "op_park shop-app"},
		{"password_spray", func() []event.Event {
			var out []event.Event
			for i := range 17 {
				out = append(out, ev(time.Duration(i)*10*s, event.ClassAuthn, "login_failed", "ip", "203.0.113.50", "reason", "unknown_account", "login_id_hash", fmt.Sprintf("h%02d", i)))
			}
			return out
		}(), "...............!!", "203.0.113.50"},
		{"credential_stuffing", func() []event.Event {
			var out []event.Event
			for i := range 16 {
				out = append(out, ev(time.Duration(i)*5*s, event.ClassAuthn, "login_failed", "ip", "203.0.113.51", "reason", "bad_password",
					"actor", fmt.Sprintf("acc_%d", i%5), "subject", fmt.Sprintf("acc_%d", i%5)))
			}
			return out
		}(), "..............!!", "203.0.113.51"},
		{"enumeration", func() []event.Event {
			var out []event.Event
			for i := range 22 {
				out = append(out, ev(time.Duration(i)*s, event.ClassAccess, "access_refused", "ip", "203.0.113.52", "reason", "no_route",
					"status", int64(404), "path_sha256", fmt.Sprintf("%016x", i)))
			}
			return out
		}(), "....................!!", "203.0.113.52"},
		{"refresh_token_reuse", []event.Event{
			ev(0, event.ClassToken, "refresh_reused", "client", "shop-app", "family", "f1"),
			ev(s, event.ClassToken, "code_replayed", "client", "shop-app"),
		}, "!!", "shop-app"},
		{"retention_shortened", []event.Event{
			ev(0, event.ClassAudit, "retention_changed", "class", "access"),
			ev(s, event.ClassAudit, "retention_change_requested", "class", "access"),
		}, ".!", "audit"},
		{"hold_release_requested", []event.Event{
			ev(0, event.ClassAudit, "hold_placed", "hold_id", "h1"),
			ev(s, event.ClassAudit, "hold_release_requested", "hold_id", "h1"),
		}, ".!", "h1"},
		{"guard_monitor", []event.Event{
			ev(0, event.ClassAdmin, "guard_started", "monitored", "", "default_mode", "enforce", "upstream", "shop"),
			ev(s, event.ClassAdmin, "guard_started", "monitored", "GET /me/profile", "default_mode", "enforce", "upstream", "shop"),
			ev(2*s, event.ClassAdmin, "guard_started", "monitored", "", "default_mode", "monitor", "upstream", "shop"),
		}, ".!!", "shop"},
		{"key_operation_burst", func() []event.Event {
			var out []event.Event
			for i, typ := range []string{"key_created", "key_activated", "key_retired", "key_created", "key_revoked", "key_created"} {
				out = append(out, ev(time.Duration(i)*time.Minute, event.ClassKey, typ, "actor", "op_kim", "kid", fmt.Sprintf("k%d", i)))
			}
			out = append(out, ev(7*time.Minute, event.ClassKey, "key_created", "actor", "system", "kid", "k9"))
			return out
		}(), "....!!.", "op_kim"},
	}
	for _, tc := range tests {
		t.Run(tc.rule, func(t *testing.T) {
			marks, groups := feed(t, tc.rule, tc.events)
			if marks != tc.marks {
				t.Fatalf("fired %s, want %s", marks, tc.marks)
			}
			if len(groups) > 0 && groups[0] != tc.group {
				t.Errorf("group %q, want %q", groups[0], tc.group)
			}
		})
	}
	// Every default rule has a test here.
	tested := map[string]bool{}
	for _, tc := range tests {
		tested[tc.rule] = true
	}
	for _, r := range DefaultRules().Rules {
		if !tested[r.Name] {
			t.Errorf("default rule %s has no firing test", r.Name)
		}
	}
}

// A window forgets what is older than it: the same events spread out do
// not fire.
func TestWindowExpires(t *testing.T) {
	var events []event.Event
	for i := range 30 {
		events = append(events, read(time.Duration(i)*time.Minute, fmt.Sprintf("acc_%d", i), fmt.Sprintf("acc_%d", i), "203.0.113.9", "name"))
	}
	if marks, _ := feed(t, "many_customers_one_fingerprint", events); marks != strings.Repeat(".", 30) {
		t.Fatalf("fired %s over 30 minutes of one read a minute", marks)
	}
}

// Reading the same victims again and again does not push others out of a
// distinct count: twenty customers' entrance codes read five times each
// in under two minutes fire bulk_sensitive_reads.
func TestRepeatsDoNotHideDistinct(t *testing.T) {
	var events []event.Event
	for round := range 5 {
		for v := range 20 {
			at := time.Duration(round*20+v) * time.Second
			events = append(events, read(at, "op_park", fmt.Sprintf("acc_%d", v), "192.0.2.5", "address entrance_code"))
		}
	}
	if marks, _ := feed(t, "bulk_sensitive_reads", events); !strings.Contains(marks, "!") {
		t.Fatalf("20 customers read 5 times each: %s", marks)
	}
	// Padding with one customer read over and over hides nothing either.
	events = events[:0]
	for v := range 20 {
		events = append(events, read(time.Duration(v)*time.Second, "op_park", fmt.Sprintf("acc_%d", v), "192.0.2.5", "address entrance_code"))
		for range 10 {
			events = append(events, read(time.Duration(v)*time.Second, "op_park", "acc_0", "192.0.2.5", "address entrance_code"))
		}
	}
	if marks, _ := feed(t, "bulk_sensitive_reads", events); !strings.Contains(marks, "!") {
		t.Fatalf("20 customers padded with one: %s", marks)
	}
}

// An event that arrives late (a guard spooled it while the log was down)
// counts where its time puts it, not in the window of the events around
// it in the log.
func TestLateEventCountsAtItsTime(t *testing.T) {
	mismatch := func(at time.Duration) event.Event {
		return ev(at, event.ClassAccess, "access_refused", "actor", "acc_1", "subject", "acc_2", "reason", "subject_mismatch")
	}
	events := []event.Event{mismatch(60 * time.Minute), mismatch(0), mismatch(61 * time.Minute)}
	if marks, _ := feed(t, "cross_account_attempts", events); marks != "..." {
		t.Fatalf("two attempts in ten minutes and one an hour before fired: %s", marks)
	}
	events = append(events, mismatch(62*time.Minute))
	if marks, _ := feed(t, "cross_account_attempts", events); marks != "...!" {
		t.Fatalf("three in ten minutes: %s", marks)
	}
}
