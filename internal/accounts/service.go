package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
)

// Store is the storage the accounts service needs. Implementations report
// store.ErrNotFound and store.ErrConflict (wrapped is fine).
type Store interface {
	// CreateAccount stores a new account; store.ErrConflict if its ID or
	// LoginID is taken.
	CreateAccount(ctx context.Context, a store.Account) error
	// Account returns the account with the given ID; store.ErrNotFound.
	Account(ctx context.Context, id string) (store.Account, error)
	// AccountByLoginID returns the account with the given normalised login
	// ID; store.ErrNotFound.
	AccountByLoginID(ctx context.Context, loginID string) (store.Account, error)
	// UpdatePasswordHash replaces the password hash; store.ErrNotFound.
	UpdatePasswordHash(ctx context.Context, id, hash string, at time.Time) error
	// DisableAccount sets DisabledAt (keeping an earlier one);
	// store.ErrNotFound.
	DisableAccount(ctx context.Context, id string, at time.Time) error
	// ListAccounts returns up to limit accounts with ID > after, by ID.
	ListAccounts(ctx context.Context, after string, limit int) ([]store.Account, error)
	// RevokeSubject revokes every unexpired receipt and refresh token of
	// subject and returns how many it revoked.
	RevokeSubject(ctx context.Context, subject string, at time.Time) (int, error)
}

// Source describes where a sign-in attempt comes from.
type Source struct {
	IP          string // client IP, as the issuer determined it
	DeviceToken string // from the device cookie, if any (see IssueDeviceToken)
	UserAgent   string // recorded in events, truncated
}

// Event types emitted by Service.
const (
	EventAccountCreated  = "account_created"  // ClassAdmin
	EventLoginSucceeded  = "login_succeeded"  // ClassAuthn
	EventLoginFailed     = "login_failed"     // ClassAuthn; Fields["reason"]
	EventPasswordChanged = "password_changed" // ClassAuthn; by the customer
	EventPasswordSet     = "password_set"     // ClassAdmin; by an operator
	EventAccountDisabled = "account_disabled" // ClassAdmin
)

// Reasons in login_failed events (Fields["reason"]). They are for the
// operator; the caller only ever sees ErrInvalidCredentials or a
// *ThrottledError.
const (
	ReasonUnknownAccount = "unknown_account"
	ReasonBadPassword    = "bad_password"
	ReasonDisabled       = "disabled"
	ReasonLocked         = "locked"
	ReasonIPRate         = "ip_rate"
	ReasonCorruptHash    = "corrupt_hash" // the stored hash does not parse
)

const maxUserAgentBytes = 256

// Service manages customer accounts: registration, sign-in, password changes
// and disabling. It is safe for concurrent use.
//
// Throttling state is kept in memory per node (see Config); everything else
// is in the Store.
type Service struct {
	st      Store
	sink    event.Sink
	now     func() time.Time
	hasher  *Hasher
	dummy   string // hash of a random password under the current params
	th      *throttle
	dev     deviceTokens
	loginID DeviceKey // key for pseudonymous login ID hashes in events (never prints)
}

// Format prints only the type name: a Service holds keys (the device key)
// that must not reach logs through %v or %+v.
func (Service) Format(f fmt.State, _ rune) { io.WriteString(f, "accounts.Service") }

// LogValue keeps the Service's keys out of slog output.
func (Service) LogValue() slog.Value { return slog.StringValue("accounts.Service") }

// options are test hooks; New uses the zero value.
type options struct {
	allowWeakParams bool
	key             keyFunc
	onHash          func(delta int)
}

// New returns a Service storing accounts in st and emitting events to sink.
// It computes one hash at start-up (the dummy hash unknown login IDs are
// checked against), so it takes as long as one sign-in.
func New(st Store, sink event.Sink, cfg Config) (*Service, error) {
	return newService(st, sink, cfg, options{})
}

func newService(st Store, sink event.Sink, cfg Config, o options) (*Service, error) {
	if st == nil || sink == nil {
		return nil, fmt.Errorf("%w: nil Store or Sink", ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults(o.allowWeakParams)
	if err != nil {
		return nil, err
	}
	key := o.key
	if key == nil {
		key = defaultKeyFunc
	}
	h, err := newHasher(cfg.Params, cfg.MaxConcurrentHashes, key)
	if err != nil {
		return nil, err
	}
	h.onHash = o.onHash
	devKey := make(DeviceKey, DeviceKeyLen)
	if len(cfg.DeviceKey) == 0 {
		rand.Read(devKey)
	} else {
		copy(devKey, cfg.DeviceKey)
	}
	var pw [24]byte
	rand.Read(pw[:])
	dummy, err := h.Hash(context.Background(), hex.EncodeToString(pw[:]))
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, devKey)
	m.Write([]byte("custos login id pseudonym key"))
	return &Service{
		st:      st,
		sink:    sink,
		now:     cfg.Now,
		hasher:  h,
		dummy:   dummy,
		th:      newThrottle(cfg),
		dev:     deviceTokens{key: devKey, ttl: cfg.DeviceTokenTTL},
		loginID: m.Sum(nil),
	}, nil
}

// accountIDEncoding is RFC 4648 base32, lower case, unpadded.
var accountIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newAccountID returns "acc_" followed by 26 lower-case base32 characters
// encoding 128 random bits. IDs are opaque and never reused; they are the
// OIDC "sub".
func newAccountID() string {
	var b [16]byte
	rand.Read(b[:])
	return "acc_" + accountIDEncoding.EncodeToString(b[:])
}

// public returns a without its password hash: hashes do not leave the
// package.
func public(a store.Account) store.Account {
	a.PasswordHash = ""
	return a
}

func requireActor(actor string) error {
	if strings.TrimSpace(actor) == "" || !utf8.ValidString(actor) || len(actor) > 200 {
		return &InputError{Field: "actor", Msg: "an actor is required (1 to 200 bytes of UTF-8)"}
	}
	return nil
}

// Register creates an account. It returns an *InputError for a bad login ID,
// name or password, and an error matching ErrLoginIDTaken (and
// store.ErrConflict) if the login ID has an account. actor is who asked
// ("self" for sign-up, or an operator). The returned account has no
// PasswordHash.
func (s *Service) Register(ctx context.Context, loginID, name, password, actor string) (store.Account, error) {
	if err := requireActor(actor); err != nil {
		return store.Account{}, err
	}
	id, err := NormalizeLoginID(loginID)
	if err != nil {
		return store.Account{}, err
	}
	if name, err = NormalizeName(name); err != nil {
		return store.Account{}, err
	}
	if err := ValidatePassword(password, id); err != nil {
		return store.Account{}, err
	}
	hash, err := s.hasher.Hash(ctx, password)
	if err != nil {
		return store.Account{}, err
	}
	now := s.now()
	a := store.Account{ID: newAccountID(), LoginID: id, Name: name, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}
	if err := s.st.CreateAccount(ctx, a); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return store.Account{}, fmt.Errorf("%w: %w", ErrLoginIDTaken, err)
		}
		return store.Account{}, fmt.Errorf("accounts: creating account: %w", err)
	}
	if err := s.emit(ctx, event.Event{Class: event.ClassAdmin, Type: EventAccountCreated, Actor: actor, Subject: a.ID}); err != nil {
		return public(a), err
	}
	return public(a), nil
}

// NewAccount is one account for RegisterMany.
type NewAccount struct {
	LoginID, Name string
}

// EventAccountsSeeded records accounts registered in bulk (ClassAdmin).
const EventAccountsSeeded = "accounts_seeded"

// RegisterMany creates synthetic accounts for a drill or a load test: all
// with one password, hashed once (so they share one hash and its salt),
// stored in batches of up to 5,000 and recorded as one accounts_seeded
// event per batch rather than one account_created each. Never for real
// customers, whose passwords are their own. It returns the accounts in
// order, without PasswordHash.
func (s *Service) RegisterMany(ctx context.Context, news []NewAccount, password, actor string) ([]store.Account, error) {
	if err := requireActor(actor); err != nil {
		return nil, err
	}
	bulk, ok := s.st.(interface {
		CreateAccounts(ctx context.Context, as []store.Account) error
	})
	if !ok {
		return nil, errors.New("accounts: the store cannot create accounts in bulk")
	}
	if err := ValidatePassword(password, ""); err != nil {
		return nil, err
	}
	hash, err := s.hasher.Hash(ctx, password)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := make([]store.Account, 0, len(news))
	const batch = 5000
	for len(news) > 0 {
		n := min(len(news), batch)
		as := make([]store.Account, n)
		for i, na := range news[:n] {
			id, err := NormalizeLoginID(na.LoginID)
			if err != nil {
				return out, err
			}
			name, err := NormalizeName(na.Name)
			if err != nil {
				return out, err
			}
			as[i] = store.Account{ID: newAccountID(), LoginID: id, Name: name, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}
		}
		if err := bulk.CreateAccounts(ctx, as); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return out, fmt.Errorf("%w: %w", ErrLoginIDTaken, err)
			}
			return out, fmt.Errorf("accounts: creating accounts: %w", err)
		}
		for _, a := range as {
			out = append(out, public(a))
		}
		if err := s.emit(ctx, event.Event{Class: event.ClassAdmin, Type: EventAccountsSeeded, Actor: actor, Fields: map[string]any{
			"count": int64(n), "first": as[0].ID, "last": as[n-1].ID, "shared_password": true,
		}}); err != nil {
			return out, err
		}
		news = news[n:]
	}
	return out, nil
}

// Authenticate signs a customer in with login ID and password.
//
// Order of work: the source IP's rate limit, then the login ID's (or the
// device's) lockout, both cheap, then one Argon2id verification, always: an
// unknown login ID is checked against a dummy hash and a disabled account's
// password is checked too, so all three take the same time as a wrong
// password and fail with the same ErrInvalidCredentials. A throttled attempt
// fails with a *ThrottledError and does no hashing. An invalid login ID or an
// over-long password is an *InputError.
//
// On success the stored hash is upgraded if it was made with other
// parameters. Every attempt emits login_succeeded or login_failed; if the
// success event cannot be recorded, the sign-in fails.
func (s *Service) Authenticate(ctx context.Context, loginID, password string, src Source) (store.Account, error) {
	if d, ok := s.th.allowIP(src.IP, s.now()); !ok {
		err := error(&ThrottledError{RetryAfter: d})
		return store.Account{}, s.loginFailed(ctx, err, "", "", ReasonIPRate, src, false)
	}
	id, err := NormalizeLoginID(loginID)
	if err != nil {
		return store.Account{}, err
	}
	if len(password) > MaxPasswordBytes {
		return store.Account{}, &InputError{Field: "password", Msg: "a password has at most 256 bytes"}
	}
	a, err := s.st.AccountByLoginID(ctx, id)
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Account{}, fmt.Errorf("accounts: looking up account: %w", err)
	}
	v, err := s.check(ctx, id, a, exists, password, src)
	if err != nil || v.reason != "" {
		if err == nil {
			err = ErrInvalidCredentials
		}
		if v.reason == "" { // context ended or store failed: no verdict
			return store.Account{}, err
		}
		return store.Account{}, s.loginFailed(ctx, err, id, a.ID, v.reason, src, v.device)
	}
	fields := map[string]any{"device": v.device}
	if v.rehash {
		fields["rehashed"] = s.rehash(ctx, a.ID, password) == nil
	}
	addUserAgent(fields, src)
	if err := s.emit(ctx, event.Event{Class: event.ClassAuthn, Type: EventLoginSucceeded, Actor: a.ID, Subject: a.ID, IP: src.IP, Fields: fields}); err != nil {
		return store.Account{}, err
	}
	return public(a), nil
}

// IssueDeviceToken returns a device token for accountID, to be stored in a
// long-lived, HttpOnly, Secure cookie after a successful sign-in. A source
// presenting it to Authenticate or ChangePassword for the same account is
// exempt from the account-wide lockout for Config.DeviceTokenTTL (it has its
// own failure limit instead). The token is a bearer secret: do not log it.
func (s *Service) IssueDeviceToken(accountID string) string {
	return s.dev.issue(accountID, s.now())
}

// verdict is the outcome of a password check that ran (or was refused by
// the lockout): reason is empty on success.
type verdict struct {
	reason string
	rehash bool
	device bool // a valid device token was presented
}

// check runs the lockout and the hash for one attempt against login ID id,
// whose account is a if exists.
func (s *Service) check(ctx context.Context, id string, a store.Account, exists bool, password string, src Source) (verdict, error) {
	var v verdict
	key := "login\x00" + id
	if exists && src.DeviceToken != "" {
		if dev, ok := s.dev.verify(a.ID, src.DeviceToken, s.now()); ok {
			key, v.device = "device\x00"+a.ID+"\x00"+dev, true
		}
	}
	st, retry, ok := s.th.begin(key, s.now())
	if !ok {
		v.reason = ReasonLocked
		return v, &ThrottledError{RetryAfter: retry}
	}
	encoded := s.dummy
	if exists {
		encoded = a.PasswordHash
	}
	match, rehash, err := s.hasher.Verify(ctx, password, encoded)
	if errors.Is(err, ErrMalformedHash) && exists {
		// A corrupt stored hash: spend the same work, then fail.
		_, _, err = s.hasher.Verify(ctx, password, s.dummy)
		match, v.reason = false, ReasonCorruptHash
	}
	if err != nil { // ctx ended while waiting for a hashing slot
		s.th.end(key, st, s.now(), outcomeAbandoned)
		return verdict{}, err
	}
	switch {
	case v.reason != "":
	case !exists:
		v.reason = ReasonUnknownAccount
	case !match:
		v.reason = ReasonBadPassword
	case a.Disabled():
		v.reason = ReasonDisabled
	}
	if v.reason != "" {
		s.th.end(key, st, s.now(), outcomeFailed)
		return v, nil
	}
	s.th.end(key, st, s.now(), outcomeSucceeded)
	v.rehash = rehash
	return v, nil
}

// loginFailed emits login_failed and returns err, joined with the emit
// error if the event could not be recorded.
func (s *Service) loginFailed(ctx context.Context, err error, loginID, subject, reason string, src Source, device bool) error {
	fields := map[string]any{"reason": reason}
	if loginID != "" {
		fields["login_id_hash"] = s.loginIDHash(loginID)
	}
	if device {
		fields["device"] = true
	}
	if t, ok := errors.AsType[*ThrottledError](err); ok {
		fields["retry_after_ms"] = t.RetryAfter.Milliseconds()
	}
	addUserAgent(fields, src)
	e := event.Event{Class: event.ClassAuthn, Type: EventLoginFailed, Actor: subject, Subject: subject, IP: src.IP, Fields: fields}
	if eerr := s.emit(ctx, e); eerr != nil {
		return errors.Join(err, eerr)
	}
	return err
}

// loginIDHash is a keyed pseudonym of a login ID, so that detection rules
// can count distinct targets (password spraying) without events carrying
// e-mail addresses or phone numbers. It is stable for the process's device
// key.
func (s *Service) loginIDHash(loginID string) string {
	m := hmac.New(sha256.New, s.loginID)
	m.Write([]byte(loginID))
	return hex.EncodeToString(m.Sum(nil)[:12])
}

func addUserAgent(fields map[string]any, src Source) {
	if src.UserAgent == "" {
		return
	}
	ua := src.UserAgent
	if len(ua) > maxUserAgentBytes {
		ua = ua[:maxUserAgentBytes]
	}
	fields["user_agent"] = strings.ToValidUTF8(ua, "\uFFFD")
}

// rehash stores a fresh hash of password under the current parameters.
func (s *Service) rehash(ctx context.Context, id, password string) error {
	hash, err := s.hasher.Hash(ctx, password)
	if err != nil {
		return err
	}
	return s.st.UpdatePasswordHash(ctx, id, hash, s.now())
}

// ChangePassword lets a signed-in customer change their password. The old
// password is checked like a sign-in (same throttling, same errors: a wrong
// one or a disabled account is ErrInvalidCredentials); the new one must pass
// ValidatePassword. Then every refresh token and access-token receipt of the
// account is revoked, so existing sessions end and access tokens fail
// introspection, and password_changed is emitted.
func (s *Service) ChangePassword(ctx context.Context, accountID, oldPassword, newPassword string, src Source) error {
	if d, ok := s.th.allowIP(src.IP, s.now()); !ok {
		return s.loginFailed(ctx, &ThrottledError{RetryAfter: d}, "", accountID, ReasonIPRate, src, false)
	}
	a, err := s.st.Account(ctx, accountID)
	if err != nil {
		return fmt.Errorf("accounts: looking up account: %w", err)
	}
	if len(oldPassword) > MaxPasswordBytes {
		return &InputError{Field: "old_password", Msg: "a password has at most 256 bytes"}
	}
	if err := ValidatePassword(newPassword, a.LoginID); err != nil {
		return err
	}
	v, err := s.check(ctx, a.LoginID, a, true, oldPassword, src)
	if err != nil || v.reason != "" {
		if err == nil {
			err = ErrInvalidCredentials
		}
		if v.reason == "" {
			return err
		}
		return s.loginFailed(ctx, err, a.LoginID, a.ID, v.reason, src, v.device)
	}
	n, err := s.replacePassword(ctx, a.ID, newPassword)
	if err != nil {
		return err
	}
	fields := map[string]any{"revoked": n}
	addUserAgent(fields, src)
	return s.emit(ctx, event.Event{Class: event.ClassAuthn, Type: EventPasswordChanged, Actor: a.ID, Subject: a.ID, IP: src.IP, Fields: fields})
}

// SetPassword sets a new password for an account on an operator's behalf
// (actor), revokes the account's tokens like ChangePassword, clears its
// lockout and emits password_set.
func (s *Service) SetPassword(ctx context.Context, accountID, newPassword, actor string) error {
	if err := requireActor(actor); err != nil {
		return err
	}
	a, err := s.st.Account(ctx, accountID)
	if err != nil {
		return fmt.Errorf("accounts: looking up account: %w", err)
	}
	if err := ValidatePassword(newPassword, a.LoginID); err != nil {
		return err
	}
	n, err := s.replacePassword(ctx, a.ID, newPassword)
	if err != nil {
		return err
	}
	s.th.reset("login\x00" + a.LoginID)
	return s.emit(ctx, event.Event{Class: event.ClassAdmin, Type: EventPasswordSet, Actor: actor, Subject: a.ID, Fields: map[string]any{"revoked": n}})
}

// replacePassword stores a hash of password and then revokes the subject's
// tokens, returning how many were revoked.
func (s *Service) replacePassword(ctx context.Context, id, password string) (int, error) {
	hash, err := s.hasher.Hash(ctx, password)
	if err != nil {
		return 0, err
	}
	if err := s.st.UpdatePasswordHash(ctx, id, hash, s.now()); err != nil {
		return 0, fmt.Errorf("accounts: storing password: %w", err)
	}
	n, err := s.st.RevokeSubject(ctx, id, s.now())
	if err != nil {
		return 0, fmt.Errorf("accounts: password changed but revoking tokens failed: %w", err)
	}
	return n, nil
}

// Disable disables an account for reason (shown to operators, at most
// MaxReasonRunes characters) and revokes all its tokens. A disabled account
// cannot sign in (ErrInvalidCredentials, as for a wrong password). Disabling
// a disabled account revokes again and keeps the first DisabledAt.
func (s *Service) Disable(ctx context.Context, accountID, actor, reason string) error {
	if err := requireActor(actor); err != nil {
		return err
	}
	if !utf8.ValidString(reason) || utf8.RuneCountInString(reason) > MaxReasonRunes ||
		strings.IndexFunc(reason, func(r rune) bool { return unicode.IsControl(r) && r != '\n' }) >= 0 {
		return &InputError{Field: "reason", Msg: "a reason is at most 500 characters of text"}
	}
	now := s.now()
	if err := s.st.DisableAccount(ctx, accountID, now); err != nil {
		return fmt.Errorf("accounts: disabling account: %w", err)
	}
	n, err := s.st.RevokeSubject(ctx, accountID, now)
	if err != nil {
		return fmt.Errorf("accounts: account disabled but revoking tokens failed: %w", err)
	}
	return s.emit(ctx, event.Event{Class: event.ClassAdmin, Type: EventAccountDisabled, Actor: actor, Subject: accountID,
		Fields: map[string]any{"reason": reason, "revoked": n}})
}

// Account returns the account with ID id (without its password hash), or an
// error matching store.ErrNotFound.
func (s *Service) Account(ctx context.Context, id string) (store.Account, error) {
	a, err := s.st.Account(ctx, id)
	if err != nil {
		return store.Account{}, fmt.Errorf("accounts: %w", err)
	}
	return public(a), nil
}

// List returns up to limit accounts (0 means DefaultListLimit; at most
// MaxListLimit) whose IDs sort after after, in ID order, without password
// hashes. Pass the last ID of one page as after to get the next.
func (s *Service) List(ctx context.Context, after string, limit int) ([]store.Account, error) {
	if limit == 0 {
		limit = DefaultListLimit
	}
	if limit < 0 || limit > MaxListLimit {
		return nil, &InputError{Field: "limit", Msg: fmt.Sprintf("limit is 1 to %d", MaxListLimit)}
	}
	as, err := s.st.ListAccounts(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("accounts: listing accounts: %w", err)
	}
	for i := range as {
		as[i] = public(as[i])
	}
	return as, nil
}

func (s *Service) emit(ctx context.Context, e event.Event) error {
	e.Time = s.now()
	if err := s.sink.Emit(ctx, e); err != nil {
		return fmt.Errorf("accounts: recording %s event: %w", e.Type, err)
	}
	return nil
}
