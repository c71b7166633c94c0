// Package verify checks custos access tokens (RFC 9068 JWTs) strictly, for
// resource servers written in Go.
//
// A custos access token is accepted only if custos really issued it: the
// signature must verify with a published, unrevoked key, the claims must pass
// strict checks, and custos must hold an unrevoked receipt for the token.
// The receipt check is what refuses a token signed with a leaked key but
// never issued (reason forged_token). The token format and every check, in
// order, with the Reason it yields, are specified in docs/spec/access-token.md.
//
// # Use
//
// Build a Verifier with New from a Config that names the issuer, this
// resource server's audience, a KeySet and a ReceiptChecker:
//
//   - A service outside custos uses NewRemoteKeySet (the issuer's JWKS,
//     found by OpenID discovery) and NewIntrospector (RFC 7662
//     introspection with the service's client credentials).
//   - Code running beside custos's store uses custos's key custody as the
//     KeySet and LocalReceipts over its receipt table.
//
// Verify returns the token's Claims or an *Error whose Reason is a stable
// code safe to show clients and to record in audit events. It fails closed:
// when keys or receipts cannot be checked the token is refused as
// unavailable.
//
// # Strictness
//
// The compact serialization is parsed here, not by a JOSE library, so that
// every step is controlled: a size cap before anything else; exactly three
// canonical unpadded base64url segments; a header that is one JSON object
// with no duplicate members, no byte-order mark and no trailing bytes, and
// that holds alg, typ and kid and nothing else (crit, jku, x5u, x5c, jwk,
// zip, enc, cty and every other member are refused); alg on an allow-list of
// EdDSA and ES256 and equal to the key's own algorithm; typ at+jwt. The
// signature is checked before any claim, so a token that is both expired and
// badly signed is reported as bad_signature. ES256 signatures must be exactly
// 64 bytes r‖s with 1 ≤ r, s < n. ECDSA signatures are malleable — (r, n−s)
// verifies too — so revocation keys on jti, never on token bytes.
//
// # Cache
//
// A Verifier remembers tokens it accepted (keyed by the token string, up to
// Config.CacheSize entries, least recently used evicted, each until its exp
// plus leeway), so a token seen again costs well under 2 µs instead of a
// signature verification. The cache saves work, never a decision: on a hit
// the Verifier still asks the KeySet for the token's kid — a revoked or
// unpublished key refuses the token at once, and a different key under the
// same kid sends the token through full verification — and still calls the
// ReceiptChecker, so a token revoked by logout, password change, account
// disable or refresh-token reuse is refused on its next use. The trade-off is
// that a hit costs one KeySet lookup and one receipt check: in-process both
// are map or index lookups; remotely the JWKS answers from memory and the
// Introspector from its own short positive cache. Remote verifiers therefore
// see a revoked token refused within the Introspector's MaxCacheAge (30 s by
// default) and a revoked key within the JWKS max-age (at most 10 minutes by
// default; custos publishes 5). Only accepted tokens enter the cache, so
// junk cannot fill it; its memory is bounded by CacheSize × MaxTokenSize.
// Claims handed to callers are always copies.
//
// # Remote key sets
//
// A JWKS refreshes on max-age and on unknown kids, single-flight and at most
// once per RefreshInterval (10 s), so random kids cannot amplify into
// requests to the issuer. A failed or unusable fetch never drops known keys.
// A key that a successful fetch no longer lists is treated as revoked,
// because custos unpublishes revoked keys and retires keys from the JWKS
// only after their last token has expired.
package verify
