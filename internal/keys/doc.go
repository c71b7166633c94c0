// Package keys is custos's key custody: the only place a private signing key
// exists in the clear.
//
// Keys are generated here with crypto/rand, sealed at rest by envelope
// encryption (each key under its own data-encryption key, which a Sealer wraps
// under the root key), and never leave: code outside custody gets a
// SigningKey, whose crypto.Signer cannot be turned back into key bytes, and
// whose String, GoString, Format, LogValue and MarshalJSON redact.
//
// Every key moves through pending → active → retired → revoked (see
// docs/spec/key-lifecycle.md). A pending key is published in the JWKS for at
// least Config.PublishLead before it may sign; the active key signs; a retired
// key is published until the last token it signed has expired; a revoked key
// is unpublished and refused at once. Rotation runs by itself (Custody.Run,
// Custody.Tick), kids are RFC 7638 thumbprints and are never reused, and the
// state is kept in a Store whose UpdateKey is a compare-and-swap, so several
// nodes may share one database.
//
// Custody implements verify.KeySet from an in-memory snapshot: looking up a
// key costs no store I/O.
package keys
