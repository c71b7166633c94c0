package tlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/durable"
	"github.com/custos-dev/custos/internal/store"
)

// tilesPerWrite bounds the full tiles (16 KiB each) stored per write.
const tilesPerWrite = 16

// integrator folds committed entries into the tree and signs checkpoints,
// at most once per CheckpointInterval. It wakes when this process commits
// a batch, and also every interval, to integrate what other writers
// appended.
func (l *Log) integrator() {
	defer close(l.intDone)
	tick := time.NewTicker(l.cfg.CheckpointInterval)
	defer tick.Stop()
	last := time.Time{}
	for {
		select {
		case <-l.ikick:
		case <-tick.C:
		case <-l.seqDone:
			// The sequencer has committed everything it will: integrate
			// the rest and stop.
			if err := l.integrate(context.Background()); err != nil {
				l.closeErr = err
			}
			return
		}
		if wait := l.cfg.CheckpointInterval - time.Since(last); wait > 0 {
			select {
			case <-time.After(wait):
			case <-l.seqDone:
			}
		}
		last = time.Now()
		if err := l.integrate(context.Background()); err != nil {
			l.cfg.Logger.Error("audit log: integration failed; retrying", "err", err)
		}
	}
}

// integrate folds every stored entry not yet in the tree into it and, if
// the tree grew, signs and stores a checkpoint for it.
func (l *Log) integrate(ctx context.Context) error {
	state, err := l.st.LogState(ctx)
	if err != nil {
		return err
	}
	if state.Integrated != l.rng.End() {
		// Another process sharing the store integrated: start from its tree.
		if err := l.loadTree(ctx, state); err != nil {
			return err
		}
	}
	size := l.rng.End()
	if state.Sequenced <= size {
		l.forget(size)
		return nil
	}
	hashes, err := l.leaves(ctx, size, state.Sequenced)
	if err != nil {
		return err
	}
	if err := l.extend(ctx, hashes); err != nil {
		if errors.Is(err, store.ErrConflict) {
			// Another process sharing the store integrated first; its
			// tree is now ours (extend reloaded it).
			return nil
		}
		return err
	}
	l.forget(l.rng.End())
	return nil
}

// leaves returns the leaf hashes of entries [from, to): from the batches
// this process committed where it has them, from the store otherwise.
func (l *Log) leaves(ctx context.Context, from, to uint64) ([]auditlog.Hash, error) {
	out := make([]auditlog.Hash, 0, to-from)
	for i := from; i < to; {
		l.imu.Lock()
		hs, ok := l.known[i]
		l.imu.Unlock()
		if ok && i+uint64(len(hs)) <= to {
			out = append(out, hs...)
			i += uint64(len(hs))
			continue
		}
		// Read up to the next batch this process knows.
		end := to
		l.imu.Lock()
		for k := range l.known {
			if k > i && k < end {
				end = k
			}
		}
		l.imu.Unlock()
		err := ReadEntries(ctx, l.st, i, end, func(_ uint64, e []byte) error {
			out = append(out, auditlog.LeafHash(e))
			return nil
		})
		if err != nil {
			return nil, err
		}
		i = end
	}
	return out, nil
}

// forget drops known batches that are in the tree.
func (l *Log) forget(size uint64) {
	l.imu.Lock()
	defer l.imu.Unlock()
	for k := range l.known {
		if k < size {
			delete(l.known, k)
		}
	}
}

// extend appends leaf hashes to the tree, stores the changed tiles and a
// signed checkpoint, and publishes it. On failure the in-memory tree is
// reloaded from the store.
func (l *Log) extend(ctx context.Context, hashes []auditlog.Hash) error {
	from := l.rng.End()
	l.dirty = make(map[tileKey]*tile)
	var visitErr error
	visit := func(id compact.NodeID, h []byte) {
		if visitErr == nil {
			visitErr = l.setNode(id, auditlog.Hash(h))
		}
	}
	for i, h := range hashes {
		if err := l.rng.Append(h[:], visit); err != nil {
			return l.fail(ctx, err)
		}
		if i%512 == 511 {
			runtime.Gosched()
		}
	}
	if visitErr != nil {
		return l.fail(ctx, visitErr)
	}
	root, err := l.rng.GetRootHash(nil)
	if err != nil {
		return l.fail(ctx, err)
	}
	cp := auditlog.Checkpoint{Origin: l.cfg.Origin, Size: l.rng.End(), Hash: auditlog.Hash(root)}
	signed, err := note.Sign(&note.Note{Text: string(cp.Marshal())}, l.cfg.Key)
	if err != nil {
		return l.fail(ctx, fmt.Errorf("tlog: sign checkpoint: %w", err))
	}
	in := store.Integration{Size: cp.Size, Checkpoint: signed, Time: l.cfg.Now()}
	// Full tiles go ahead in small writes, so no single commit holds up
	// the appends queued behind it for long; the growing tiles go with
	// the checkpoint. Only the parts that changed are written.
	var full [][]store.TilePart
	for _, t := range l.dirty {
		parts, err := t.changed()
		if err != nil {
			return l.fail(ctx, fmt.Errorf("tlog: %w", err))
		}
		if t.width() == tileWidth {
			full = append(full, parts)
		} else {
			in.Tiles = append(in.Tiles, parts...)
		}
	}
	for len(full) > 0 {
		n := min(len(full), tilesPerWrite)
		if err := l.st.PutTiles(ctx, slices.Concat(full[:n]...)); err != nil {
			return l.fail(ctx, fmt.Errorf("tlog: store tiles: %w", err))
		}
		full = full[n:]
	}
	if err := l.st.Integrate(ctx, from, in); err != nil {
		return l.fail(ctx, fmt.Errorf("tlog: store integration: %w", err))
	}
	for _, t := range l.dirty {
		t.stored = t.width()
	}
	// Full tiles leave the right edge.
	for k, t := range l.edge {
		if t.width() == tileWidth {
			delete(l.edge, k)
		}
	}
	l.dirty = nil
	l.publish(signed, cp)
	return nil
}

func (l *Log) fail(ctx context.Context, err error) error {
	l.dirty = nil
	state, serr := l.st.LogState(ctx)
	if serr == nil {
		serr = l.loadTree(ctx, state)
	}
	return errors.Join(err, serr)
}

// publish records a durable checkpoint as the latest, writes it to the
// checkpoint file, and tells the OnCheckpoint hook.
func (l *Log) publish(signed []byte, cp auditlog.Checkpoint) {
	l.latest.Store(&published{signed: signed, cp: cp})
	if l.cfg.CheckpointFile != "" {
		if err := l.writeCheckpointFile(signed, cp); err != nil {
			l.cfg.Logger.Error("audit log: cannot write checkpoint file", "path", l.cfg.CheckpointFile, "err", err)
		}
	}
	if l.cfg.OnCheckpoint != nil {
		l.cfg.OnCheckpoint(signed, cp)
	}
}

// setNode records a new tree node in its tile on the right edge.
func (l *Log) setNode(id compact.NodeID, h auditlog.Hash) error {
	level, idx, sub, pos := locate(id.Level, id.Index)
	k := tileKey{level, idx}
	t := l.edge[k]
	if t == nil {
		if pos != 0 || sub != 0 {
			return fmt.Errorf("tlog: node %d/%d starts tile %d/%d in the middle", id.Level, id.Index, level, idx)
		}
		t = newTile(level, idx)
		l.edge[k] = t
	}
	l.dirty[k] = t
	return t.set(sub, pos, h)
}

// loadTree rebuilds the in-memory right edge of the tree at state's
// integrated size from the stored tiles, checking them against the stored
// checkpoint.
func (l *Log) loadTree(ctx context.Context, state store.LogState) error {
	size := state.Integrated
	l.edge = make(map[tileKey]*tile)
	// The tiles still growing at this size: one per level.
	for level := uint8(0); ; level++ {
		n := size >> (tileHeight * uint(level)) // nodes at this tile level's bottom
		if n == 0 {
			break
		}
		if w := n % tileWidth; w != 0 {
			rec, err := store.ReadTile(ctx, l.st, level, n/tileWidth)
			if err != nil {
				return fmt.Errorf("tlog: load tile %d/%d: %w", level, n/tileWidth, err)
			}
			t, err := parseTile(rec, true)
			if err != nil {
				return err
			}
			if uint64(t.width()) < w {
				return fmt.Errorf("tlog: tile %d/%d has width %d, the tree needs %d", level, n/tileWidth, t.width(), w)
			}
			// A tile may be wider than the integrated size if a later
			// integration's tiles were stored without its state (they
			// never are; be strict anyway and cut it back).
			for k := range t.rows {
				t.rows[k] = t.rows[k][:w>>k]
			}
			t.stored = t.width()
			l.edge[tileKey{level, n / tileWidth}] = t
		}
	}
	hashes, err := l.rangeHashes(ctx, size)
	if err != nil {
		return err
	}
	rng, err := factory.NewRange(0, size, hashes)
	if err != nil {
		return fmt.Errorf("tlog: rebuild tree: %w", err)
	}
	l.rng = rng
	root := emptyRoot()
	if size > 0 {
		if root, err = rng.GetRootHash(nil); err != nil {
			return err
		}
	}
	if state.Checkpoint == nil {
		if size != 0 {
			return fmt.Errorf("%w: the tree has %d entries but no checkpoint", ErrRolledBack, size)
		}
		return nil
	}
	cp, err := l.openCheckpoint(state.Checkpoint)
	if err != nil {
		return fmt.Errorf("tlog: stored checkpoint: %w", err)
	}
	if cp.Size != size || cp.Hash != auditlog.Hash(root) {
		return fmt.Errorf("%w: the stored tiles at size %d do not match the stored checkpoint", ErrRolledBack, size)
	}
	l.latest.Store(&published{signed: state.Checkpoint, cp: cp})
	return nil
}

func emptyRoot() []byte {
	h := auditlog.EmptyRoot()
	return h[:]
}

// rangeHashes returns the roots of the perfect subtrees that make up a tree
// of the given size, left to right.
func (l *Log) rangeHashes(ctx context.Context, size uint64) ([][]byte, error) {
	ids := compact.RangeNodes(0, size, nil)
	out := make([][]byte, len(ids))
	r := &nodeReader{st: l.st}
	for i, id := range ids {
		h, err := r.node(ctx, id)
		if err != nil {
			return nil, err
		}
		out[i] = h[:]
	}
	return out, nil
}

// checkPublished refuses a stored log that is behind or differs from the
// checkpoint last written to the checkpoint file.
func (l *Log) checkPublished(state store.LogState) error {
	if l.cfg.CheckpointFile == "" {
		return nil
	}
	signed, err := os.ReadFile(l.cfg.CheckpointFile)
	if errors.Is(err, os.ErrNotExist) {
		if state.Integrated > 0 && state.Checkpoint != nil {
			return writeFileAtomic(l.cfg.CheckpointFile, state.Checkpoint)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("tlog: read checkpoint file: %w", err)
	}
	cp, err := l.openCheckpoint(signed)
	if err != nil {
		return fmt.Errorf("tlog: checkpoint file %s: %w", l.cfg.CheckpointFile, err)
	}
	if cp.Size > state.Integrated {
		return fmt.Errorf("%w: checkpoint %d was published but the database's tree has only %d entries (restored from an older copy?)",
			ErrRolledBack, cp.Size, state.Integrated)
	}
	root, err := RootAt(context.Background(), l.st, cp.Size)
	if err != nil {
		return fmt.Errorf("tlog: tree at published size %d: %w", cp.Size, err)
	}
	if root != cp.Hash {
		return fmt.Errorf("%w: the database's tree at size %d differs from the published checkpoint", ErrRolledBack, cp.Size)
	}
	return nil
}

func (l *Log) openCheckpoint(signed []byte) (auditlog.Checkpoint, error) {
	cp, _, err := auditlog.OpenCheckpoint(signed, l.cfg.Verifier)
	return cp, err
}

// writeCheckpointFile records cp in the checkpoint file unless the file
// already holds a larger checkpoint (another process sharing the store may
// have published one).
func (l *Log) writeCheckpointFile(signed []byte, cp auditlog.Checkpoint) error {
	if old, err := os.ReadFile(l.cfg.CheckpointFile); err == nil {
		if prev, err := l.openCheckpoint(old); err == nil && prev.Size >= cp.Size {
			return nil
		}
	}
	return writeFileAtomic(l.cfg.CheckpointFile, signed)
}

// writeFileAtomic replaces path with data durably: a temporary file is
// written and synced, renamed over path, and the directory synced.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".checkpoint-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return durable.SyncDir(dir)
}
