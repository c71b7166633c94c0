package verify

import (
	"context"
	"errors"
)

// ReceiptChecker confirms that custos really issued a token and has not
// revoked it. It returns nil, or an error wrapping ErrNoReceipt (the token
// was never issued: a forgery) or ErrTokenRevoked.
type ReceiptChecker interface {
	CheckReceipt(ctx context.Context, c *Claims) error
}

var (
	// ErrNoReceipt means custos holds no receipt matching the token.
	ErrNoReceipt = errors.New("verify: no receipt for token")
	// ErrTokenRevoked means the token's receipt was revoked.
	ErrTokenRevoked = errors.New("verify: token revoked")
)
