// Package auditlog lets anyone outside custos check what custos's audit log
// claims, with nothing but a checkpoint and public keys.
//
// custos appends every security event to an append-only Merkle tree log
// (RFC 6962 hashing), serves it with the c2sp.org/tlog-tiles HTTP API, and
// signs its tree heads as c2sp.org/tlog-checkpoint checkpoints in the
// c2sp.org/signed-note format. Outside witnesses (an auditor, a regulator)
// cosign each checkpoint they have checked to be consistent with every
// earlier one they saw (c2sp.org/tlog-cosignature, cosignature/v1). A
// checkpoint therefore commits custos to one history: deleting, editing,
// reordering or forking a single entry changes the root hash and is
// provable.
//
// # What an outsider does
//
// An auditor is given custos's log verifier key (an ordinary Ed25519 note
// key, whose name is the log's origin) and the witnesses' cosignature
// verifier keys, and then:
//
//   - Checks a proof file. Given a c2sp.org/tlog-proof@v1 file (custos
//     hands these out for individual events), ParseProof and Proof.Verify
//     check the log's signature, a quorum of witness cosignatures and the
//     entry's inclusion, offline.
//   - Checks a checkpoint. OpenCheckpoint verifies a signed checkpoint and
//     any cosignatures; CheckQuorum requires enough of them.
//   - Checks that the log only grew. Keep every checkpoint you verified;
//     for a newer one, get a consistency proof (from a ProofBuilder over the
//     log's tiles) and call VerifyConsistency. A failure is proof that the
//     log rewrote its history.
//   - Reads the log. HTTPFetcher reads any tlog-tiles log; ParseTilePath,
//     TilePath, EntriesPath, TileWidthAt, ParseHashTile and
//     ParseEntryBundle decode what it serves; a ProofBuilder recomputes the
//     root and builds inclusion and consistency proofs from the hash tiles.
//     Tiles are not signed: whatever is computed from them must be checked
//     against a verified checkpoint, which these functions make easy and
//     never skip on your behalf.
//
// # Formats
//
// Hashes are SHA-256 (LeafHash, NodeHash, EmptyRoot, MerkleRoot), written
// in standard padded base64. Parsers are strict and bounded: every accepted
// checkpoint, proof file, tile path and entry bundle re-encodes to exactly
// the input bytes, so two encodings of one value cannot both circulate.
//
// custos itself uses this package to write its log (NewNoteSigner signs
// checkpoints with a key held in custody; NewCosigner makes witness
// cosignatures), so the log and its checkers share one implementation of
// the formats. For the key identifiers see KeyID and
// c2sp.org/signed-note.
//
// # Errors
//
// Errors match one of ErrMalformed, ErrUnverified, ErrQuorum, ErrProof,
// ErrNotFound and ErrInvalid with errors.Is; typed errors (*FormatError,
// *InclusionError, *ConsistencyError, *OriginError, *QuorumError,
// *StatusError) carry the details for errors.AsType. The exceptions are
// what the caller's own parts return, passed through wrapped: a
// crypto.Signer's signing error, and a Fetcher's transport and context
// errors.
package auditlog
