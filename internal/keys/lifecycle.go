package keys

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
)

// Note prefixes: every transition writes Note as "<what>: <why>", so the
// reasons operators give can never be mistaken for custody's own markers.
const (
	notePrefixUnpublished = "unpublished: "
)

// op is one lifecycle operation: its clock, actor, and the event-recording
// failures met on the way. Store changes are made first and never rolled
// back; a failed Emit is reported after the operation finished.
type op struct {
	c       *Custody
	ctx     context.Context
	now     time.Time
	actor   string
	emitErr []error
}

func (c *Custody) newOp(ctx context.Context, now time.Time, actor string) *op {
	if actor == "" {
		actor = ActorSystem
	}
	return &op{c: c, ctx: ctx, now: now, actor: actor}
}

func (o *op) emit(typ string, k store.Key, reason string, extra map[string]any) {
	f := map[string]any{
		"kid":       k.ID,
		"alg":       k.Algorithm,
		"state":     string(k.State),
		"reason":    reason,
		"imported":  k.Imported,
		"custodian": k.Custodian,
	}
	for n, v := range extra {
		f[n] = v
	}
	e := event.Event{Time: o.now, Class: event.ClassKey, Type: typ, Actor: o.actor, Fields: f}
	if err := o.c.sink.Emit(o.ctx, e); err != nil {
		o.emitErr = append(o.emitErr, fmt.Errorf("%s for key %s: %w", typ, k.ID, err))
	}
}

// done refreshes the snapshot and reports what went wrong.
func (o *op) done(err error) error {
	if rerr := o.c.refresh(o.ctx); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if len(o.emitErr) > 0 {
		err = errors.Join(err, fmt.Errorf("keys: key state changed but recording the event failed: %w", errors.Join(o.emitErr...)))
	}
	return err
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// create generates, seals and stores a key: pending (may sign from now +
// PublishLead) or, when active is true, active at once.
func (o *op) create(active bool, why string) (store.Key, error) {
	c := o.c
	priv, err := generateKey(c.cfg.Algorithm)
	if err != nil {
		return store.Key{}, err
	}
	defer wipe(priv)
	rec := store.Key{
		Algorithm: c.cfg.Algorithm,
		State:     store.KeyPending,
		Custodian: c.cfg.Custodian,
		CreatedAt: o.now,
		Note:      "created: " + why,
	}
	if active {
		rec.State, rec.ActivateAt, rec.ActivatedAt = store.KeyActive, o.now, o.now
		rec.Note = "activated: " + why
	} else {
		rec.ActivateAt = o.now.Add(c.cfg.PublishLead)
	}
	if err := o.seal(&rec, priv); err != nil {
		return store.Key{}, err
	}
	if err := c.st.InsertKey(o.ctx, rec); err != nil {
		return store.Key{}, fmt.Errorf("keys: store new key %s: %w", rec.ID, err)
	}
	o.emit(EventKeyCreated, rec, why, map[string]any{"activate_at": ts(rec.ActivateAt)})
	if active {
		o.emit(EventKeyActivated, rec, why, map[string]any{"emergency": false})
	}
	return rec, nil
}

// seal fills rec's ID, PublicJWK, Sealed and Sealer from priv.
func (o *op) seal(rec *store.Key, priv crypto.Signer) error {
	kid, err := thumbprint(priv.Public())
	if err != nil {
		return err
	}
	jwk, err := json.Marshal(publicJWK(priv.Public(), kid, rec.Algorithm))
	if err != nil {
		return fmt.Errorf("keys: key %s: public JWK: %w", kid, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("keys: key %s: cannot encode private key", kid)
	}
	defer clear(der)
	sealed, err := sealPrivateKey(o.ctx, o.c.sealer, kid, rec.Algorithm, der)
	if err != nil {
		return err
	}
	rec.ID, rec.PublicJWK, rec.Sealed, rec.Sealer = kid, jwk, sealed, o.c.sealer.Name()
	return nil
}

// move compare-and-swaps k into state to, setting that state's timestamps.
func (o *op) move(k store.Key, to store.KeyState, why string) (store.Key, error) {
	from := k.State
	next := k
	next.State = to
	switch to {
	case store.KeyActive:
		next.ActivatedAt = o.now
		next.Note = "activated: " + why
	case store.KeyRetired:
		next.RetiredAt = o.now
		next.PublishUntil = o.now.Add(o.c.cfg.MaxTokenLifetime + o.c.cfg.Leeway)
		next.Note = "retired: " + why
	case store.KeyRevoked:
		next.RevokedAt = o.now
		next.Note = "revoked: " + why
	default:
		return k, fmt.Errorf("keys: no transition to %s", to)
	}
	if err := o.c.st.UpdateKey(o.ctx, next, from); err != nil {
		return k, fmt.Errorf("keys: key %s %s → %s: %w", k.ID, from, to, err)
	}
	return next, nil
}

// promote makes pending the active key and retires every key in olds.
// Activation comes first, so there is always a key to sign with; until the
// old keys are retired the snapshot signs with the newest activation.
func (o *op) promote(pending store.Key, olds []store.Key, why string, emergency bool) error {
	published := o.now.Sub(pending.CreatedAt)
	act, err := o.move(pending, store.KeyActive, why)
	if err != nil {
		return err
	}
	o.emit(EventKeyActivated, act, why, map[string]any{
		"emergency":         emergency,
		"published_seconds": int64(published / time.Second),
	})
	return o.retire(olds, "succeeded by "+act.ID+": "+why)
}

func (o *op) retire(olds []store.Key, why string) error {
	for _, old := range olds {
		ret, err := o.move(old, store.KeyRetired, why)
		if err != nil {
			return err
		}
		o.emit(EventKeyRetired, ret, why, map[string]any{"publish_until": ts(ret.PublishUntil)})
	}
	return nil
}

// ensurePending creates a pending key unless recs has one.
func (o *op) ensurePending(recs []store.Key) error {
	if oldestPending(recs) != nil {
		return nil
	}
	_, err := o.create(false, "pending successor")
	return err
}

// Rotate promotes the pending key, retires the active key (published until
// now + MaxTokenLifetime + Leeway) and generates a new pending successor. It
// refuses with a *NotReadyError if the pending key has not been published
// for PublishLead: verifiers holding a cached JWKS would refuse its tokens.
// (Revoke the active key for an emergency rotation.) If there is no pending
// key, one is generated and the same error is returned. A concurrent
// rotation by another node fails with an error wrapping store.ErrConflict.
func (c *Custody) Rotate(ctx context.Context, actor, reason string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.newOp(ctx, c.cfg.Now(), actor)
	return o.done(o.rotate(reason))
}

func (o *op) rotate(reason string) error {
	recs, err := o.c.st.Keys(o.ctx)
	if err != nil {
		return fmt.Errorf("keys: rotate: %w", err)
	}
	p := oldestPending(recs)
	if p == nil {
		nk, err := o.create(false, "pending successor")
		if err != nil {
			return err
		}
		p = &nk
	}
	if o.now.Before(p.ActivateAt) {
		return &NotReadyError{KeyID: p.ID, CreatedAt: p.CreatedAt, ActivateAt: p.ActivateAt, Now: o.now}
	}
	newest, others := splitActive(recs)
	if newest != nil {
		others = append(others, *newest)
	}
	if err := o.promote(*p, others, "rotation: "+reason, false); err != nil {
		return err
	}
	_, err = o.create(false, "pending successor")
	return err
}

// Revoke revokes key kid, from any state: it leaves the JWKS and LookupKey
// refuses it with verify.ErrRevokedKey as soon as Revoke returns (other
// nodes: at their next reload). If it was the active key, the pending
// successor is promoted at once—an emergency rotation: it may have been
// published for less than PublishLead, so a verifier with a stale JWKS sees
// an unknown kid and refetches—and a new pending key is generated. If it was
// the pending key, a new one is generated. Revoking a revoked key does
// nothing. An unknown kid fails with an error wrapping store.ErrNotFound.
func (c *Custody) Revoke(ctx context.Context, kid, actor, reason string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.newOp(ctx, c.cfg.Now(), actor)
	return o.done(o.revoke(kid, reason))
}

func (o *op) revoke(kid, reason string) error {
	recs, err := o.c.st.Keys(o.ctx)
	if err != nil {
		return fmt.Errorf("keys: revoke: %w", err)
	}
	i := -1
	for j := range recs {
		if recs[j].ID == kid {
			i = j
		}
	}
	if i < 0 {
		if len(kid) > maxKidInError {
			kid = kid[:maxKidInError] + "…"
		}
		return fmt.Errorf("keys: revoke: no key %q: %w", kid, store.ErrNotFound)
	}
	k := recs[i]
	if k.State == store.KeyRevoked {
		return nil
	}
	rev, err := o.move(k, store.KeyRevoked, reason)
	if err != nil {
		return err
	}
	recs[i] = rev
	o.emit(EventKeyRevoked, rev, reason, map[string]any{"previous_state": string(k.State)})
	// Refuse the key everywhere in this process before anything else.
	if err := o.c.rebuild(o.ctx, recs); err != nil {
		return err
	}
	if k.State == store.KeyActive {
		if err := o.ensureActive(recs, "emergency: "+k.ID+" revoked: "+reason); err != nil {
			return err
		}
		recs, err = o.c.st.Keys(o.ctx)
		if err != nil {
			return fmt.Errorf("keys: revoke: %w", err)
		}
	}
	return o.ensurePending(recs)
}

// ensureActive makes sure some key signs: if none is active, the pending key
// is promoted at once (an emergency promotion), or a new key is activated at
// once when there is no pending key either.
func (o *op) ensureActive(recs []store.Key, why string) error {
	if newest, _ := splitActive(recs); newest != nil {
		return nil
	}
	if p := oldestPending(recs); p != nil {
		return o.promote(*p, nil, why, true)
	}
	_, err := o.create(true, why)
	return err
}

// Import adopts a legacy Ed25519 or P-256 private key (PEM: PKCS#8 "PRIVATE
// KEY" or SEC 1 "EC PRIVATE KEY"). Its kid is its RFC 7638 thumbprint; a kid
// custody already knows, in any state, is refused with an error wrapping
// store.ErrConflict. The key is flagged Imported—exposure unknown—and becomes
// active at once (relying parties already trust it), retiring the current
// active key; it is itself retired by the first rotation, which Tick makes
// no later than ActivePeriod after the import, and never signs again. Its
// custodian is actor, who must not have been offboarded. The caller should
// zero pemPrivateKey afterwards.
func (c *Custody) Import(ctx context.Context, pemPrivateKey []byte, actor string) (KeyInfo, error) {
	gone, err := c.st.OffboardedCustodians(ctx)
	if err != nil {
		return KeyInfo{}, fmt.Errorf("keys: import: %w", err)
	}
	for _, o := range gone {
		if o.Custodian == actor {
			return KeyInfo{}, fmt.Errorf("keys: import: %s was offboarded on %s and holds no key any more", actor, o.At.UTC().Format(time.RFC3339))
		}
	}
	priv, err := parseImportPEM(pemPrivateKey)
	if err != nil {
		return KeyInfo{}, err
	}
	defer wipe(priv)
	alg, err := algorithmOf(priv.Public())
	if err != nil {
		return KeyInfo{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.newOp(ctx, c.cfg.Now(), actor)
	rec, err := o.importKey(priv, alg)
	if err != nil {
		return KeyInfo{}, o.done(err)
	}
	return infoOf(rec, o.now), o.done(nil)
}

func (o *op) importKey(priv crypto.Signer, alg string) (store.Key, error) {
	rec := store.Key{
		Algorithm:   alg,
		State:       store.KeyActive,
		Custodian:   o.actor,
		Imported:    true,
		CreatedAt:   o.now,
		ActivateAt:  o.now,
		ActivatedAt: o.now,
		Note:        "imported: exposure unknown",
	}
	if err := o.seal(&rec, priv); err != nil {
		return store.Key{}, err
	}
	recs, err := o.c.st.Keys(o.ctx)
	if err != nil {
		return store.Key{}, fmt.Errorf("keys: import: %w", err)
	}
	for _, r := range recs {
		if r.ID == rec.ID {
			return store.Key{}, fmt.Errorf("keys: import: key %s is already known (%s); a kid is never reused: %w", r.ID, r.State, store.ErrConflict)
		}
	}
	if err := o.c.st.InsertKey(o.ctx, rec); err != nil {
		return store.Key{}, fmt.Errorf("keys: import key %s: %w", rec.ID, err)
	}
	o.emit(EventKeyImported, rec, "imported: exposure unknown", map[string]any{"exposure": "unknown"})
	newest, others := splitActive(recs)
	if newest != nil {
		others = append(others, *newest)
	}
	if err := o.retire(others, "succeeded by imported key "+rec.ID); err != nil {
		return rec, err
	}
	return rec, o.ensurePending(recs)
}

// MaxOffboardReason bounds an offboarding's reason, in characters.
const MaxOffboardReason = 500

// Offboarded is what Offboard did; it is empty when Offboard recorded
// nothing.
type Offboarded struct {
	Recorded bool      // the offboarding is stored
	Held     []KeyInfo // the custodian's keys, before any was revoked
	Revoked  []string  // kids revoked now
}

// Offboard records that custodian has left: from now on any token naming a
// key they hold raises an alert (detection rule offboarded_custodian_key).
// With revoke, every key they hold that is not yet revoked is revoked, as
// Revoke does: an active one is replaced at once. The custodian of the keys
// custody generates (Config.Custodian) cannot be offboarded: those keys
// never leave custody. Offboarding a custodian twice fails with an error
// wrapping store.ErrConflict and changes nothing.
func (c *Custody) Offboard(ctx context.Context, custodian, actor, reason string, revoke bool) (Offboarded, error) {
	switch {
	case len(custodian) > 256 || !plainText(custodian, false):
		return Offboarded{}, errors.New("keys: offboard: name a custodian (at most 256 bytes of text on one line)")
	case custodian == c.cfg.Custodian:
		return Offboarded{}, fmt.Errorf("keys: offboard: %q is the custodian of the keys custos generates, which never leave custody", custodian)
	case utf8.RuneCountInString(reason) > MaxOffboardReason || !plainText(reason, true):
		return Offboarded{}, fmt.Errorf("keys: offboard: give a reason of at most %d characters", MaxOffboardReason)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.newOp(ctx, c.cfg.Now(), actor)
	var out Offboarded
	recs, err := c.st.Keys(ctx)
	if err != nil {
		return out, o.done(fmt.Errorf("keys: offboard: %w", err))
	}
	for _, k := range recs {
		if k.Custodian == custodian {
			out.Held = append(out.Held, infoOf(k, o.now))
		}
	}
	if err := c.st.OffboardCustodian(ctx, store.Offboarding{Custodian: custodian, At: o.now, Actor: o.actor, Reason: reason}); err != nil {
		return Offboarded{}, o.done(fmt.Errorf("keys: offboard %s: %w", custodian, err))
	}
	out.Recorded = true
	var errs []error
	if revoke {
		for _, k := range out.Held {
			if k.State == store.KeyRevoked {
				continue
			}
			if err := o.revoke(k.ID, "custodian "+custodian+" offboarded: "+reason); err != nil {
				errs = append(errs, err)
				continue
			}
			out.Revoked = append(out.Revoked, k.ID)
		}
	}
	e := event.Event{Time: o.now, Class: event.ClassKey, Type: EventCustodianOffboarded, Actor: o.actor,
		Fields: map[string]any{"custodian": custodian, "reason": reason, "keys": len(out.Held), "revoked": len(out.Revoked)}}
	if err := c.sink.Emit(ctx, e); err != nil {
		o.emitErr = append(o.emitErr, fmt.Errorf("%s for %s: %w", EventCustodianOffboarded, custodian, err))
	}
	return out, o.done(errors.Join(errs...))
}

// plainText reports whether s is valid UTF-8 with something other than
// spaces in it and no control characters but, if lines, newlines.
func plainText(s string, lines bool) bool {
	if strings.TrimSpace(s) == "" || !utf8.ValidString(s) {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && !(lines && r == '\n') }) < 0
}

// Tick runs one scheduling step at now: it repairs the key set (more than
// one active key, or none), rotates when the active key has been active for
// ActivePeriod and its successor has been published for PublishLead—or
// regardless of the successor once the active key reaches MaxAge—emits
// key_unpublished for retired keys past their PublishUntil (they stay
// retired), and generates a pending successor if there is none.
func (c *Custody) Tick(ctx context.Context, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tick(ctx, now)
}

func (c *Custody) tick(ctx context.Context, now time.Time) error {
	o := c.newOp(ctx, now, ActorSystem)
	return o.done(o.tick())
}

func (o *op) tick() error {
	cfg := o.c.cfg
	recs, err := o.c.st.Keys(o.ctx)
	if err != nil {
		return fmt.Errorf("keys: tick: %w", err)
	}
	reload := func() error {
		recs, err = o.c.st.Keys(o.ctx)
		if err != nil {
			return fmt.Errorf("keys: tick: %w", err)
		}
		return nil
	}
	if len(recs) == 0 {
		// A new install: no verifier can have cached an older JWKS.
		if _, err := o.create(true, "first key of a new installation"); err != nil {
			return err
		}
		_, err := o.create(false, "pending successor")
		return err
	}
	newest, extra := splitActive(recs)
	if len(extra) > 0 {
		if err := o.retire(extra, "repair: more than one active key"); err != nil {
			return err
		}
	}
	if newest == nil {
		if err := o.ensureActive(recs, "repair: no active key"); err != nil {
			return err
		}
		if err := reload(); err != nil {
			return err
		}
	} else if age := o.now.Sub(newest.ActivatedAt); age >= cfg.ActivePeriod {
		p := oldestPending(recs)
		switch {
		case p != nil && !o.now.Before(p.ActivateAt):
			err = o.promote(*p, []store.Key{*newest}, "scheduled rotation", false)
		case age >= cfg.MaxAge && p != nil:
			err = o.promote(*p, []store.Key{*newest}, "maximum age reached", true)
		case age >= cfg.MaxAge:
			if _, err = o.create(true, "maximum age reached, no successor"); err == nil {
				err = o.retire([]store.Key{*newest}, "maximum age reached")
			}
		}
		if err != nil {
			return err
		}
		if err := reload(); err != nil {
			return err
		}
	}
	for _, r := range recs {
		if r.State == store.KeyRetired && !published(r, o.now) {
			if err := o.unpublish(r); err != nil {
				return err
			}
		}
	}
	return o.ensurePending(recs)
}

// unpublish marks a retired key whose last token has expired as unpublished
// and destroys its sealed private key: it can never sign again (it stopped
// Leeway after it was retired), so nothing is lost, and no later copy of
// the database, even with the root key, holds it.
func (o *op) unpublish(r store.Key) error {
	marked := strings.HasPrefix(r.Note, notePrefixUnpublished)
	if marked && destroyed(r) {
		return nil
	}
	if !marked {
		next := r
		next.Note = notePrefixUnpublished + "its last token expired; " + r.Note
		if err := o.c.st.UpdateKey(o.ctx, next, store.KeyRetired); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return nil // revoked meanwhile, or another node did it
			}
			return fmt.Errorf("keys: key %s: mark unpublished: %w", r.ID, err)
		}
		r = next
	}
	if err := o.c.st.DestroySealedKey(o.ctx, r.ID); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil // revoked meanwhile: revoking destroys it too
		}
		return fmt.Errorf("keys: key %s: destroy private key: %w", r.ID, err)
	}
	reason := "last token expired"
	if marked {
		reason = "private key of an unpublished key destroyed"
	}
	o.emit(EventKeyUnpublished, r, reason, map[string]any{"publish_until": ts(r.PublishUntil), "private_key": "destroyed"})
	return nil
}

// destroyed reports whether r's sealed private key is gone.
func destroyed(r store.Key) bool { return len(r.Sealed) == 0 }

// Run ticks every TickInterval—reloading the snapshot, so changes other
// nodes make are seen—until ctx is done, then returns nil. Tick errors are
// logged and retried at the next tick.
func (c *Custody) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := c.Tick(ctx, c.cfg.Now()); err != nil {
				c.cfg.Logger.ErrorContext(ctx, "keys: tick failed", "err", err)
			}
		}
	}
}
