package verify

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ReceiptKindAccess is the ReceiptRecord.Kind of an access-token receipt.
const ReceiptKindAccess = "access"

// ReceiptRecord is the part of a custos token receipt a verifier compares
// with the token.
type ReceiptRecord struct {
	JTI       string
	Kind      string // "access", "refresh" or "id"; only "access" passes
	Subject   string
	ClientID  string
	KeyID     string
	IssuedAt  time.Time
	ExpiresAt time.Time
	Revoked   bool
}

// ReceiptLookup finds the receipt of the token with the given jti. When
// there is none it returns an error wrapping ErrNoReceipt; any other error
// means the lookup failed (and the token is refused as unavailable).
type ReceiptLookup interface {
	Receipt(ctx context.Context, jti string) (ReceiptRecord, error)
}

// LocalReceipts returns the in-process ReceiptChecker over l, for code that
// runs beside custos's store. A token passes only if its receipt exists, is
// for an access token, and matches the token exactly — jti, subject,
// client, kid, and iat and exp to the second — so a forger who copies a real
// jti into a token of their own still fails with ErrNoReceipt. A matching
// revoked receipt yields ErrTokenRevoked.
func LocalReceipts(l ReceiptLookup) ReceiptChecker { return localReceipts{l} }

type localReceipts struct{ lookup ReceiptLookup }

func (lr localReceipts) CheckReceipt(ctx context.Context, c *Claims) error {
	r, err := lr.lookup.Receipt(ctx, c.JTI)
	if err != nil {
		if errors.Is(err, ErrNoReceipt) {
			return err
		}
		return fmt.Errorf("verify: receipt lookup: %w", err)
	}
	switch {
	case r.JTI != c.JTI,
		r.Kind != ReceiptKindAccess,
		r.Subject != c.Subject,
		r.ClientID != c.ClientID,
		r.KeyID != c.KeyID,
		r.IssuedAt.Unix() != c.IssuedAt.Unix(),
		r.ExpiresAt.Unix() != c.ExpiresAt.Unix():
		return fmt.Errorf("%w: the receipt for this jti does not match the token", ErrNoReceipt)
	case r.Revoked:
		return ErrTokenRevoked
	}
	return nil
}
