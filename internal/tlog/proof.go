package tlog

import (
	"context"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store"
)

// TileReader reads stored tiles.
type TileReader interface {
	Tile(ctx context.Context, level uint8, index uint64) (store.Tile, error)
}

// nodeReader reads tree nodes from stored tiles, remembering the tiles it
// has read.
type nodeReader struct {
	st    TileReader
	tiles map[tileKey]*tile
}

func (r *nodeReader) node(ctx context.Context, id compact.NodeID) (auditlog.Hash, error) {
	level, idx, sub, pos := locate(id.Level, id.Index)
	k := tileKey{level, idx}
	t := r.tiles[k]
	if t == nil {
		rec, err := r.st.Tile(ctx, level, idx)
		if err != nil {
			return auditlog.Hash{}, fmt.Errorf("tlog: node %d/%d: %w", id.Level, id.Index, err)
		}
		if t, err = parseTile(rec, false); err != nil {
			return auditlog.Hash{}, err
		}
		if r.tiles == nil {
			r.tiles = make(map[tileKey]*tile)
		}
		r.tiles[k] = t
	}
	h, ok := t.node(sub, pos)
	if !ok {
		return auditlog.Hash{}, fmt.Errorf("tlog: node %d/%d is not in tile %d/%d (width %d)", id.Level, id.Index, level, idx, t.width())
	}
	return h, nil
}

func (r *nodeReader) proof(ctx context.Context, n proof.Nodes) ([]auditlog.Hash, error) {
	hs := make([][]byte, len(n.IDs))
	for i, id := range n.IDs {
		h, err := r.node(ctx, id)
		if err != nil {
			return nil, err
		}
		hs[i] = h[:]
	}
	hs, err := n.Rehash(hs, factory.Hash)
	if err != nil {
		return nil, err
	}
	out := make([]auditlog.Hash, len(hs))
	for i, h := range hs {
		out[i] = auditlog.Hash(h)
	}
	return out, nil
}

// InclusionProof returns the proof that entry index is in the tree of the
// given size, which must not exceed the latest checkpoint's.
func (l *Log) InclusionProof(ctx context.Context, index, size uint64) ([]auditlog.Hash, error) {
	if err := l.checkSize(size); err != nil {
		return nil, err
	}
	return InclusionProof(ctx, l.st, index, size)
}

// ConsistencyProof returns the proof that the tree of size older is a
// prefix of the tree of size newer.
func (l *Log) ConsistencyProof(ctx context.Context, older, newer uint64) ([]auditlog.Hash, error) {
	if err := l.checkSize(newer); err != nil {
		return nil, err
	}
	return ConsistencyProof(ctx, l.st, older, newer)
}

// InclusionProof computes an inclusion proof from stored tiles, without a
// running Log (for offline tools). The tiles must cover size.
func InclusionProof(ctx context.Context, st TileReader, index, size uint64) ([]auditlog.Hash, error) {
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("tlog: %w", err)
	}
	r := nodeReader{st: st}
	return r.proof(ctx, n)
}

// ConsistencyProof computes a consistency proof from stored tiles, without
// a running Log.
func ConsistencyProof(ctx context.Context, st TileReader, older, newer uint64) ([]auditlog.Hash, error) {
	n, err := proof.Consistency(older, newer)
	if err != nil {
		return nil, fmt.Errorf("tlog: %w", err)
	}
	r := nodeReader{st: st}
	return r.proof(ctx, n)
}

// RootAt computes the root of the tree of the given size from stored tiles.
func RootAt(ctx context.Context, st TileReader, size uint64) (auditlog.Hash, error) {
	if size == 0 {
		return auditlog.EmptyRoot(), nil
	}
	ids := compact.RangeNodes(0, size, nil)
	r := nodeReader{st: st}
	var root auditlog.Hash
	for i := len(ids) - 1; i >= 0; i-- {
		h, err := r.node(ctx, ids[i])
		if err != nil {
			return auditlog.Hash{}, err
		}
		if i == len(ids)-1 {
			root = h
		} else {
			root = auditlog.NodeHash(h, root)
		}
	}
	return root, nil
}

func (l *Log) checkSize(size uint64) error {
	if _, cp := l.Checkpoint(); size > cp.Size {
		return fmt.Errorf("tlog: tree size %d is beyond the latest checkpoint (%d)", size, cp.Size)
	}
	return nil
}
