package verify

import "context"

// TokenReceiptChecker is a ReceiptChecker that needs the token itself, such
// as the Introspector, which hands it to the issuer (RFC 7662). When
// Config.Receipts implements it, the Verifier calls CheckTokenReceipt
// instead of CheckReceipt. Its error contract is ReceiptChecker's.
type TokenReceiptChecker interface {
	ReceiptChecker
	CheckTokenReceipt(ctx context.Context, token string, c *Claims) error
}
