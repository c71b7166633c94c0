// Package store defines the records custos keeps and the errors every storage
// backend reports. It holds no behaviour: the packages that use storage declare
// the narrow interfaces they need (keys.Store, accounts.Store, issuer.Store),
// and each backend (store/sqlite today, PostgreSQL later) implements them all.
// store/storetest is the conformance suite every backend must pass.
package store

import "errors"

// Sentinel errors. Backends wrap them with context; callers match with errors.Is.
var (
	// ErrNotFound means the record asked for does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict means a uniqueness constraint or a compare-and-swap failed:
	// the record exists already, or was changed by someone else.
	ErrConflict = errors.New("store: conflict")
	// ErrReused means a single-use credential (authorization code, refresh
	// token) was presented a second time.
	ErrReused = errors.New("store: credential already used")
)
