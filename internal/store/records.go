package store

import (
	"time"
)

// Account is a customer.
type Account struct {
	ID           string // opaque, stable subject identifier ("sub")
	LoginID      string // normalised e-mail address or E.164 phone number; unique
	Name         string
	PasswordHash string // PHC string, e.g. $argon2id$v=19$m=19456,t=2,p=1$...
	CreatedAt    time.Time
	UpdatedAt    time.Time
	DisabledAt   time.Time // zero while enabled
}

// Disabled reports whether the account has been disabled.
func (a Account) Disabled() bool { return !a.DisabledAt.IsZero() }

// ClientKind distinguishes clients that can keep a secret from those that can't.
type ClientKind string

const (
	ClientConfidential ClientKind = "confidential"
	ClientPublic       ClientKind = "public"
)

// Client is an OAuth client registered by an operator.
type Client struct {
	ID           string
	Name         string
	Kind         ClientKind
	SecretHash   []byte   // SHA-256 of the generated secret; empty for public clients
	RedirectURIs []string // matched exactly
	Scopes       []string // scopes the client may ask for
	Audiences    []string // resource servers its access tokens may name; first is the default
	GrantTypes   []string // "authorization_code", "refresh_token", "client_credentials"
	CreatedAt    time.Time
}

// KeyState is a signing key's place in its lifecycle.
type KeyState string

const (
	KeyPending KeyState = "pending" // published, not yet signing
	KeyActive  KeyState = "active"  // signing
	KeyRetired KeyState = "retired" // published until its last token expires, no longer signing
	KeyRevoked KeyState = "revoked" // unpublished, refused everywhere
)

// Key is a signing key as stored: public half in the clear, private half sealed.
type Key struct {
	ID          string // kid: RFC 7638 thumbprint; never reused
	Algorithm   string // "EdDSA" or "ES256"
	State       KeyState
	PublicJWK   []byte // JSON Web Key of the public half
	Sealed      []byte // private key, envelope-encrypted; opaque to the store
	Sealer      string // name of the sealer that wrapped it
	Custodian   string
	Imported    bool // imported from elsewhere: exposure unknown
	CreatedAt   time.Time
	ActivateAt  time.Time // earliest time it may sign (pending keys)
	ActivatedAt time.Time
	RetiredAt   time.Time
	RevokedAt   time.Time
	// PublishUntil is when a retired key leaves the JWKS: after the last
	// token it signed has expired.
	PublishUntil time.Time
	Note         string // why the last transition happened
}

// Offboarding records that a key custodian has left: every key they hold
// is suspect from At on.
type Offboarding struct {
	Custodian string
	At        time.Time
	Actor     string // who recorded it
	Reason    string
}

// ReceiptKind is the kind of token a receipt is for.
type ReceiptKind string

const (
	ReceiptAccess ReceiptKind = "access"
	ReceiptID     ReceiptKind = "id"
	// ReceiptRefresh receipts were written for refresh tokens by earlier
	// versions; a refresh token's own row (RefreshToken) is its record.
	ReceiptRefresh ReceiptKind = "refresh"
)

// Receipt records a token custos issued. It is written before the token is
// returned; a token without one was not issued by custos.
type Receipt struct {
	JTI       string
	Kind      ReceiptKind
	Subject   string
	ClientID  string
	KeyID     string
	IssuedAt  time.Time
	ExpiresAt time.Time
	SessionID string
	Grant     string // grant type that produced it
	ClientIP  string
	FamilyID  string // refresh-token family the token descends from, if any
	RevokedAt time.Time
}

// Revoked reports whether the receipt has been revoked.
func (r Receipt) Revoked() bool { return !r.RevokedAt.IsZero() }

// AuthCode is a pending authorization code, stored by the hash of its value.
type AuthCode struct {
	Hash          []byte
	ClientID      string
	RedirectURI   string
	Subject       string
	SessionID     string
	Scope         string
	Nonce         string
	CodeChallenge string // S256 challenge
	Audience      string
	AuthTime      time.Time
	ExpiresAt     time.Time
	UsedAt        time.Time
	FamilyID      string // refresh family created when the code was redeemed
}

// RefreshToken is an opaque refresh token, stored by the hash of its value;
// the row is the token's receipt. Each use spends it and issues a successor
// in the same family; presenting a spent token revokes the whole family.
type RefreshToken struct {
	Hash      []byte
	JTI       string // names the token in events
	FamilyID  string
	ClientID  string
	Subject   string
	SessionID string
	Scope     string
	Audience  string
	AuthTime  time.Time
	IssuedAt  time.Time
	ExpiresAt time.Time
	SpentAt   time.Time
	RevokedAt time.Time
	Grant     string // grant type that produced it
	ClientIP  string
}

// Grant is what one token-endpoint request writes: the receipts of the
// tokens it returns and, when it returns one, the new refresh token.
type Grant struct {
	Receipts []Receipt
	Refresh  *RefreshToken // nil when no refresh token is issued
	// Events are audit log entries (canonical events) appended in the same
	// transaction: the log records the grant if and only if it happened.
	Events [][]byte
}
