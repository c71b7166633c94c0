package accounts

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Match them with errors.Is.
var (
	// ErrInvalidCredentials means the login ID and password did not sign in:
	// wrong password, unknown login ID or disabled account. The three are
	// deliberately indistinguishable to the caller (the login_failed event
	// tells the operator which).
	ErrInvalidCredentials = errors.New("accounts: invalid login ID or password")
	// ErrThrottled is matched by every *ThrottledError.
	ErrThrottled = errors.New("accounts: too many attempts")
	// ErrLoginIDTaken means Register was given a login ID that already has an
	// account. The error also matches store.ErrConflict.
	ErrLoginIDTaken = errors.New("accounts: login ID already registered")
	// ErrInvalidConfig means New or NewHasher was given an unusable Config.
	ErrInvalidConfig = errors.New("accounts: invalid config")
)

// ThrottledError means the attempt was refused without checking the password,
// because the source IP or the account has had too many attempts. The caller
// should answer 429 with a Retry-After of RetryAfter, rounded up.
type ThrottledError struct {
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("accounts: too many attempts; retry after %s", e.RetryAfter)
}

// Unwrap makes errors.Is(err, ErrThrottled) true.
func (e *ThrottledError) Unwrap() error { return ErrThrottled }

// InputError reports input that can never succeed (a malformed login ID, a
// password that is too short, ...). Msg is safe to show to the person who
// typed it; it never contains the password.
type InputError struct {
	Field string // "login_id", "name", "password", "reason", "limit", ...
	Msg   string
}

func (e *InputError) Error() string {
	return fmt.Sprintf("accounts: invalid %s: %s", e.Field, e.Msg)
}
