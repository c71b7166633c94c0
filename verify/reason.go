package verify

import (
	"errors"
	"fmt"
)

// Reason is a stable, machine-readable code for why a token was refused. The
// codes appear in audit events and guard responses; they never change meaning.
type Reason string

const (
	ReasonMalformed   Reason = "malformed"        // not a well-formed compact JWS, oversized, bad JSON, duplicate members
	ReasonAlgorithm   Reason = "bad_algorithm"    // alg not allowed, or not the key's algorithm
	ReasonType        Reason = "wrong_type"       // typ is not at+jwt
	ReasonCritical    Reason = "unknown_crit"     // crit names an extension we don't understand
	ReasonHeader      Reason = "untrusted_header" // jku, x5u, x5c, jwk or another header we never trust
	ReasonUnknownKey  Reason = "unknown_kid"      // no published key has this kid
	ReasonRevokedKey  Reason = "revoked_key"      // the key was revoked
	ReasonSignature   Reason = "bad_signature"    // signature does not verify
	ReasonExpired     Reason = "expired"          // exp has passed
	ReasonNotYetValid Reason = "not_yet_valid"    // nbf or iat in the future
	ReasonLifetime    Reason = "lifetime"         // exp-iat above policy, or missing exp/iat
	ReasonClaims      Reason = "bad_claims"       // required claim missing or of the wrong type
	ReasonIssuer      Reason = "wrong_issuer"     // iss is not the expected issuer
	ReasonAudience    Reason = "wrong_audience"   // aud does not name this resource server
	ReasonForged      Reason = "forged_token"     // well signed, but custos holds no receipt
	ReasonRevoked     Reason = "revoked_token"    // receipt revoked (logout, password change, family reuse)
	ReasonUnavailable Reason = "unavailable"      // keys or receipts could not be checked; fail closed
)

// Error is the error Verify returns. Reason is safe to show to clients;
// Err carries detail for logs and never contains the token itself.
type Error struct {
	Reason Reason
	Err    error
	// Claims, for ReasonForged and ReasonRevoked, are the claims of a
	// token whose signature and claims checked out but which custos
	// never issued or has revoked: authentic to the signing key, not to
	// custos. They say whom a forger meant to be, for the record and for
	// an incident's scope; they never grant anything.
	Claims *Claims
}

func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("verify: token refused: %s", e.Reason)
	}
	return fmt.Sprintf("verify: token refused: %s: %v", e.Reason, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the reason code carried by err, or "" if err is not a
// verification error.
func ReasonOf(err error) Reason {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Reason
	}
	return ""
}
