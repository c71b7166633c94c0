package simulate

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/detect"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
)

// shopReads are what a customer, and the attacker, read.
var shopReads = []string{"/me/profile", "/me/addresses", "/me/orders"}

// phase runs ordinary traffic with the attack in the middle of it, waits
// for the detector to read everything, and reports.
func (d *drill) phase(ctx context.Context, mode guard.Mode, active, targets []int, pr *PhaseReport) error {
	if mode == guard.Monitor {
		if err := d.ackAll(ctx); err != nil {
			return err
		}
		if err := d.setGuard(ctx, guard.Monitor, d.upstream); err != nil {
			return err
		}
		d.note("phase two: the guard switched to monitor mode (forwards what fails a check, records and raises it)")
	} else {
		d.note("phase one: the guard in enforce mode")
	}
	phaseStart := time.Now()
	var sessions, requests, failures atomic.Int64
	var attack attackResult
	half := make(chan struct{})
	var halfOnce sync.Once
	var wg sync.WaitGroup
	wg.Go(func() {
		<-half
		attack = d.attack(ctx, targets)
	})
	work := make(chan int)
	for range d.cfg.Workers {
		wg.Go(func() {
			for i := range work {
				r, f := d.session(ctx, i, active[i])
				requests.Add(int64(r))
				failures.Add(int64(f))
				if sessions.Add(1) >= int64(len(active)/2) {
					halfOnce.Do(func() { close(half) })
				}
			}
		})
	}
	d.note("%d customers go about their business", len(active))
	for i := range active {
		select {
		case work <- i:
		case <-ctx.Done():
		}
	}
	close(work)
	halfOnce.Do(func() { close(half) })
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	d.report.NormalRequests += int(requests.Load())
	d.report.Normal.Sessions += int(sessions.Load())
	d.report.Normal.Failures += int(failures.Load())
	d.mu.Unlock()
	pr.ForgedRequests, pr.ForgedAccepted, pr.RecordsExposed = attack.requests, attack.accepted, attack.records
	if mode == guard.Monitor {
		pr.ForgedForwarded = attack.accepted
	}
	d.note("ordinary traffic done: %d sessions, %d requests, %d failed", sessions.Load(), requests.Load(), failures.Load())
	d.note("attack done: %d forged requests, %d answered with personal data", attack.requests, attack.accepted)

	if err := d.caughtUp(ctx, 2*time.Minute); err != nil {
		return err
	}
	return d.assess(ctx, phaseStart, attack, pr)
}

// session is one customer's visit: now and then a mistyped password, a
// sign-in, reads of their own data, a refresh, another read. It returns
// the requests made and how many failed.
func (d *drill) session(ctx context.Context, slot, customer int) (requests, failures int) {
	c := newClient(customerIP(slot))
	defer c.close()
	if customer%10 == 3 {
		_, n, err := c.signIn(ctx, d.base, d.shop, redirectURI, d.loginID(customer), "a mistyped password")
		requests += n
		if !errors.Is(err, errBadCredentials) {
			failures++
		}
	}
	tok, n, err := c.signIn(ctx, d.base, d.shop, redirectURI, d.loginID(customer), d.password)
	requests += n
	if err != nil {
		d.cfg.Logger.Warn("drill: a customer could not sign in", "customer", customer, "err", err)
		return requests, failures + 1
	}
	read := func(path string) {
		status, _, err := c.read(ctx, d.guardURL+path, tok.Access, customerUA)
		requests++
		if err != nil || status != 200 {
			failures++
		}
	}
	for _, p := range shopReads {
		read(p)
	}
	if tok, err = c.refresh(ctx, d.base, d.shop, tok.Refresh); err != nil {
		return requests + 1, failures + 1
	}
	requests++
	read("/me/orders")
	return requests, failures
}

// attackResult is what the attacker got.
type attackResult struct {
	requests, accepted, records int
	first                       time.Time
	exposed                     map[string]bool // subjects whose data came back
}

// attack forges a token for each target with the legacy key and reads
// their profile, addresses and orders, rotating through the attacker's
// IPs.
func (d *drill) attack(ctx context.Context, targets []int) attackResult {
	res := attackResult{exposed: map[string]bool{}}
	clients := make([]*client, d.cfg.AttackIPs)
	for i := range clients {
		clients[i] = newClient(d.attackerIP(i))
		defer clients[i].close()
	}
	var mu sync.Mutex
	var seq atomic.Int64
	work := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for t := range work {
				sub := d.ids[t]
				tok := d.forge(sub)
				for _, p := range shopReads {
					c := clients[int(seq.Add(1))%len(clients)]
					sent := time.Now()
					status, body, err := c.read(ctx, d.guardURL+p, tok, attackerUA)
					mu.Lock()
					if res.first.IsZero() || sent.Before(res.first) {
						res.first = sent
					}
					res.requests++
					if err == nil && status == 200 {
						res.accepted++
						res.records += records(body)
						res.exposed[sub] = true
					}
					mu.Unlock()
				}
			}
		})
	}
	d.note("the insider starts: forged tokens for %d customers from %d IPs", len(targets), len(clients))
	for _, t := range targets {
		select {
		case work <- t:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	return res
}

// records counts the customer records in a shop answer: an object is one,
// a list is one each.
func records(body []byte) int {
	var list []json.RawMessage
	if json.Unmarshal(body, &list) == nil {
		return len(list)
	}
	return 1
}

// forge mints the token the insider makes: well signed with the legacy
// key, claims shaped like custos's own, never issued.
func (d *drill) forge(sub string) string {
	now := time.Now()
	hdr, _ := json.Marshal(map[string]string{"alg": "EdDSA", "typ": "at+jwt", "kid": d.kid})
	claims, _ := json.Marshal(map[string]any{
		"iss": d.base, "sub": sub, "aud": shopAudience, "client_id": d.shop, "scope": "openid profile",
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": rand.Text(), "sid": "sid_" + rand.Text(),
	})
	in := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(claims)
	sig, _ := d.legacy.Sign(rand.Reader, []byte(in), crypto.Hash(0))
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// caughtUp waits, at most wait, until the detector has read the whole log.
func (d *drill) caughtUp(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		ls, err := d.n.Store.LogState(ctx)
		if err != nil {
			return err
		}
		st, err := d.n.Store.DetectorState(ctx, detect.DefaultName)
		if err == nil && st.Next >= ls.Sequenced {
			return nil
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the detector is at %d of %d entries after %v", st.Next, ls.Sequenced, wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// assess attributes the alerts raised in the phase, and checks the scope
// the audit log gives against what the attacker got.
func (d *drill) assess(ctx context.Context, since time.Time, attack attackResult, pr *PhaseReport) error {
	alerts, err := d.n.Store.Alerts(ctx, store.AlertFilter{})
	if err != nil {
		return err
	}
	pr.Alerts = map[string]int64{}
	var first *store.Alert
	for _, a := range alerts {
		if a.RaisedAt.Before(since) {
			continue
		}
		cause, err := d.cause(ctx, a)
		if err != nil {
			return err
		}
		switch cause {
		case "attack":
			pr.Alerts[a.Rule] += a.Count
			d.note("alert %s (%s, %s) raised %.3fs into the drill: %s; %d events", a.ID, a.Rule, a.Severity,
				a.RaisedAt.Sub(d.start).Seconds(), a.Title, a.Count)
			if first == nil || a.RaisedAt.Before(first.RaisedAt) {
				first = &a
			}
		case "ordinary":
			d.mu.Lock()
			d.report.Normal.FalseAlerts++
			d.mu.Unlock()
			d.note("FALSE ALERT %s (%s) on ordinary traffic: group %q", a.ID, a.Rule, a.Group)
		case "unrelated":
			// Someone else's traffic on a running custos.
		default:
			d.note("alert %s (%s): the drill's own %s", a.ID, a.Rule, cause)
		}
	}
	if first != nil && !attack.first.IsZero() {
		s := math.Round(first.RaisedAt.Sub(attack.first).Seconds()*1000) / 1000
		pr.SecondsToFirstAlert = &s
		d.note("first alert %s (%s, %s) %.3fs after the first forged request", first.ID, first.Rule, first.Severity, s)
	} else {
		d.note("the attack raised no alert")
	}

	// Scope from the log: whose data left for a forged token; and what
	// detection did on its own.
	exposed := map[string]bool{}
	pr.Responses = map[string]int{}
	err = d.n.Audit.Query(ctx, audit.Filter{Since: since, Types: []string{"access_monitored", "data_read", detect.EventAlertResponse}}, func(r audit.Record) error {
		// Only the drill's own: on a running custos, others' traffic
		// and responses to it are in the log too.
		switch {
		case r.Event.Type == detect.EventAlertResponse:
			if d.isAttacker(r.Event.IP) || d.isCustomer(r.Event.Subject) {
				action, _ := r.Event.Fields["action"].(string)
				pr.Responses[action]++
			}
		case r.Event.Fields["reason"] == "forged_token" && r.Event.Fields["status"] == int64(200) &&
			d.isCustomer(r.Event.Subject) && d.isAttacker(r.Event.IP):
			exposed[r.Event.Subject] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	pr.ExposedSubjects = len(exposed)
	pr.ScopeExact = len(exposed) == len(attack.exposed)
	for s := range attack.exposed {
		if !exposed[s] {
			pr.ScopeExact = false
		}
	}
	d.note("scope from the audit log: %d customers' data left for forged tokens; the attacker got %d; exact: %v",
		len(exposed), len(attack.exposed), pr.ScopeExact)
	if n := pr.Responses[detect.ActionBlockIP]; n > 0 {
		d.note("detection blocked %d of the attacker's addresses at the guard on its own", n)
	}
	return nil
}

// cause says what raised an alert, from its first event: the attack (an
// attacker IP, or the legacy key), the drill's own operations (key and
// guard changes), the drill's ordinary customers, or (against a running
// custos) traffic unrelated to the drill.
func (d *drill) cause(ctx context.Context, a store.Alert) (string, error) {
	var e event.Event
	found := false
	err := d.n.Audit.Query(ctx, audit.Filter{After: a.FirstIndex}, func(r audit.Record) error {
		e, found = r.Event, r.Index == a.FirstIndex
		return audit.ErrStop
	})
	switch {
	case err != nil:
		return "", err
	case !found:
		return "", fmt.Errorf("alert %s: its first event %d is not in the log", a.ID, a.FirstIndex)
	}
	if d.isAttacker(e.IP) {
		return "attack", nil
	}
	if e.Fields["kid"] == d.kid && e.Class != event.ClassKey {
		return "attack", nil
	}
	if (e.Class == event.ClassKey || e.Class == event.ClassAdmin) && d.own(e.Actor) {
		return e.Type, nil
	}
	if isCustomerIP(e.IP) || d.isCustomer(e.Subject) || d.isCustomer(e.Actor) {
		return "ordinary", nil
	}
	return "unrelated", nil
}

// own reports whether actor is one the drill acts as.
func (d *drill) own(actor string) bool {
	switch actor {
	case actorDrill, actorHR, actorSOC, d.migrator:
		return true
	}
	return false
}

// ackAll acknowledges the open alerts the drill raised, as the security
// team handles phase one before phase two.
func (d *drill) ackAll(ctx context.Context) error {
	open, err := d.n.Store.Alerts(ctx, store.AlertFilter{State: store.AlertOpen})
	if err != nil {
		return err
	}
	acked := 0
	for _, a := range open {
		if a.RaisedAt.Before(d.start) {
			continue
		}
		if cause, err := d.cause(ctx, a); err != nil || cause == "unrelated" {
			continue
		}
		if _, err := d.n.AckAlert(ctx, a.ID, actorSOC, "handled in phase one of the breach drill"); err != nil {
			return err
		}
		acked++
	}
	d.note("the security team acknowledged %d alerts from phase one", acked)
	return nil
}
