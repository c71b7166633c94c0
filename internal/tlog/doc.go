// Package tlog is custos's append-only Merkle log: the storage engine of the
// audit log.
//
// Entries are appended with [Log.Append], which returns once the entry is
// durable and has its final index; appends arriving together share one
// store commit (group commit). A background integrator folds new entries
// into the RFC 6962 tree, stores the changed tiles, and signs a C2SP
// checkpoint with the log's note key, at most one CheckpointInterval after
// the entries were acknowledged. The tree is kept as C2SP tlog-tiles hash
// tiles (with their interior rows, so proofs need no rehashing) and entries
// as entry bundles, and [Log.Handler] serves both with the tlog-tiles API.
//
// The log never signs two inconsistent checkpoints: a checkpoint is signed
// only over a tree whose tiles are durable, every checkpoint extends the
// stored tree, and the latest checkpoint is also kept in a file outside the
// database, so that a database restored from an older copy is refused at
// start instead of silently forking the log.
package tlog
