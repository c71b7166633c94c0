package tlog

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store"
)

// TileReader reads stored tile parts.
type TileReader = store.TilePartReader

// nodeReader reads tree nodes from stored tiles. Nodes in level-0 tiles are
// read from the one or two parts of their tile that hold them (a few KiB);
// tiles above level 0 are read whole and, with a cache, shared with other
// readers: there are 256 times fewer of them, and most never change.
type nodeReader struct {
	st    TileReader
	cache *tileCache
	parts []store.TilePart       // level-0 parts read so far (a proof reads a few)
	tiles map[tileKey]store.Tile // upper tiles read so far, without a cache
}

// part returns the level-0 part read so far with the given key.
func (r *nodeReader) part(k tileKey, num uint8) (store.TilePart, bool) {
	for _, p := range r.parts {
		if p.Index == k.index && p.Part == num {
			return p, true
		}
	}
	return store.TilePart{}, false
}

// prefetch reads the stored parts of level-0 tiles holding the given
// nodes, one read per tile: the bottom parts of the lower nodes, and the
// top part only if no bottom part is read (each carries a copy of the top
// rows; node reads the top part if the copy lacks a node).
func (r *nodeReader) prefetch(ctx context.Context, ids []compact.NodeID) error {
	type tileMask struct {
		k    tileKey
		mask uint16
	}
	var masks []tileMask // a proof's nodes are in a few level-0 tiles
	for _, id := range ids {
		level, idx, sub, pos := locate(id.Level, id.Index)
		if level > 0 {
			continue // read whole, on first use
		}
		k, bit := tileKey{level, idx}, uint16(1)<<store.NodePart(sub, pos)
		i := slices.IndexFunc(masks, func(m tileMask) bool { return m.k == k })
		if i < 0 {
			masks = append(masks, tileMask{k, bit})
		} else {
			masks[i].mask |= bit
		}
	}
	for _, m := range masks {
		k, mask := m.k, m.mask
		if mask != 1<<store.TopPart {
			mask &^= 1 << store.TopPart
		}
		for _, p := range r.parts {
			if p.Index == k.index {
				mask &^= 1 << p.Part
			}
		}
		if mask == 0 {
			continue
		}
		if err := r.readParts(ctx, k, mask); err != nil {
			return err
		}
	}
	return nil
}

func (r *nodeReader) readParts(ctx context.Context, k tileKey, mask uint16) error {
	parts, err := r.st.TileParts(ctx, k.level, k.index, mask)
	if err != nil {
		return fmt.Errorf("tlog: read tile %d/%d: %w", k.level, k.index, err)
	}
	r.parts = append(r.parts, parts...)
	return nil
}

// upper returns an upper tile wide enough to hold the node at (sub, pos).
func (r *nodeReader) upper(ctx context.Context, k tileKey, sub int, pos uint64) (store.Tile, error) {
	need := int(pos+1) << sub
	if t, ok := r.tiles[k]; ok && t.Width >= need {
		return t, nil
	}
	if t, ok := r.cache.get(k); ok && t.Width >= need {
		return t, nil
	}
	t, err := store.ReadTile(ctx, r.st, k.level, k.index)
	if err != nil {
		return t, fmt.Errorf("tlog: read tile %d/%d: %w", k.level, k.index, err)
	}
	if r.cache != nil {
		r.cache.put(k, t)
		return t, nil
	}
	if r.tiles == nil {
		r.tiles = make(map[tileKey]store.Tile)
	}
	r.tiles[k] = t
	return t, nil
}

func (r *nodeReader) node(ctx context.Context, id compact.NodeID) (auditlog.Hash, error) {
	level, idx, sub, pos := locate(id.Level, id.Index)
	k := tileKey{level, idx}
	if level > 0 {
		t, err := r.upper(ctx, k, sub, pos)
		if err != nil {
			return auditlog.Hash{}, fmt.Errorf("tlog: node %d/%d: %w", id.Level, id.Index, err)
		}
		// Rows are stored bottom-up, row k holding Width>>k hashes.
		off := 0
		for k := range sub {
			off += t.Width >> k
		}
		if pos >= uint64(t.Width>>sub) || len(t.Data) < (off+int(pos)+1)*len(auditlog.Hash{}) {
			return auditlog.Hash{}, fmt.Errorf("tlog: node %d/%d is not in tile %d/%d (width %d)", id.Level, id.Index, level, idx, t.Width)
		}
		var h auditlog.Hash
		copy(h[:], t.Data[(off+int(pos))*len(h):])
		return h, nil
	}
	num := store.NodePart(sub, pos)
	if num == store.TopPart {
		// An upper node: in any bottom part's copy of the top rows, or
		// in the top part.
		for _, p := range r.parts {
			if p.Index == idx {
				if h, ok := p.Node(sub, pos); ok {
					return h, nil
				}
			}
		}
	}
	p, ok := r.part(k, num)
	if !ok {
		if err := r.readParts(ctx, k, 1<<num); err != nil {
			return auditlog.Hash{}, err
		}
		p, _ = r.part(k, num)
	}
	h, ok := p.Node(sub, pos)
	if !ok {
		return auditlog.Hash{}, fmt.Errorf("tlog: node %d/%d is not in tile %d/%d", id.Level, id.Index, level, idx)
	}
	return h, nil
}

// tileCache holds tiles above level 0. It is bounded: at its limit it drops
// an arbitrary tile.
type tileCache struct {
	mu    sync.Mutex
	tiles map[tileKey]store.Tile
}

// maxCachedTiles bounds the cache: 16 MiB of tiles, enough for the upper
// levels of a log of over a quarter of a billion entries.
const maxCachedTiles = 1024

func (c *tileCache) get(k tileKey) (store.Tile, bool) {
	if c == nil {
		return store.Tile{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.tiles[k]
	return t, ok
}

// put caches t unless a wider version of it is cached.
func (c *tileCache) put(k tileKey, t store.Tile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tiles == nil {
		c.tiles = make(map[tileKey]store.Tile)
	}
	if old, ok := c.tiles[k]; ok {
		if old.Width < t.Width {
			c.tiles[k] = t
		}
		return
	}
	if len(c.tiles) >= maxCachedTiles {
		for old := range c.tiles {
			delete(c.tiles, old)
			break
		}
	}
	c.tiles[k] = t
}

func (r *nodeReader) proof(ctx context.Context, n proof.Nodes) ([]auditlog.Hash, error) {
	if err := r.prefetch(ctx, n.IDs); err != nil {
		return nil, err
	}
	nodes := make([]auditlog.Hash, len(n.IDs))
	hs := make([][]byte, len(n.IDs))
	for i, id := range n.IDs {
		h, err := r.node(ctx, id)
		if err != nil {
			return nil, err
		}
		nodes[i] = h
		hs[i] = nodes[i][:]
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
	return inclusionProof(ctx, &nodeReader{st: l.st, cache: &l.tileCache}, index, size)
}

// ConsistencyProof returns the proof that the tree of size older is a
// prefix of the tree of size newer.
func (l *Log) ConsistencyProof(ctx context.Context, older, newer uint64) ([]auditlog.Hash, error) {
	if err := l.checkSize(newer); err != nil {
		return nil, err
	}
	return consistencyProof(ctx, &nodeReader{st: l.st, cache: &l.tileCache}, older, newer)
}

// InclusionProof computes an inclusion proof from stored tiles, without a
// running Log (for offline tools). The tiles must cover size.
func InclusionProof(ctx context.Context, st TileReader, index, size uint64) ([]auditlog.Hash, error) {
	return inclusionProof(ctx, &nodeReader{st: st}, index, size)
}

// ConsistencyProof computes a consistency proof from stored tiles, without
// a running Log.
func ConsistencyProof(ctx context.Context, st TileReader, older, newer uint64) ([]auditlog.Hash, error) {
	return consistencyProof(ctx, &nodeReader{st: st}, older, newer)
}

func inclusionProof(ctx context.Context, r *nodeReader, index, size uint64) ([]auditlog.Hash, error) {
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("tlog: %w", err)
	}
	return r.proof(ctx, n)
}

func consistencyProof(ctx context.Context, r *nodeReader, older, newer uint64) ([]auditlog.Hash, error) {
	n, err := proof.Consistency(older, newer)
	if err != nil {
		return nil, fmt.Errorf("tlog: %w", err)
	}
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
