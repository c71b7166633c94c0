package auditlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// A Fetcher reads resources of a c2sp.org/tlog-tiles log by path, such as
// "checkpoint", "tile/0/000" or "tile/entries/x001/234.p/7". A missing
// resource is an error matching ErrNotFound.
type Fetcher interface {
	Fetch(ctx context.Context, path string) ([]byte, error)
}

// MaxFetchSize caps a response HTTPFetcher reads: the largest possible
// entry bundle, 256 entries of 65535 bytes with their length prefixes.
const MaxFetchSize = TileWidth * (2 + MaxEntrySize)

// HTTPFetcher fetches tlog-tiles resources over HTTP with GET Base+"/"+path.
// Base is the log's URL prefix, such as "https://custos.example/log"; a
// trailing slash is ignored. A nil Client means http.DefaultClient.
type HTTPFetcher struct {
	Base   string
	Client *http.Client
}

var _ Fetcher = HTTPFetcher{}

// Fetch returns the body of a 200 response. Any other status is a
// *StatusError, which matches ErrNotFound for 404; a body larger than
// MaxFetchSize is an error matching ErrMalformed.
func (f HTTPFetcher) Fetch(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(f.Base, "/")+"/"+path, nil)
	if err != nil {
		return nil, fmt.Errorf("auditlog: fetching %s: %w", path, err)
	}
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("auditlog: fetching %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{Path: path, StatusCode: resp.StatusCode}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxFetchSize+1))
	if err != nil {
		return nil, fmt.Errorf("auditlog: fetching %s: %w", path, err)
	}
	if len(body) > MaxFetchSize {
		return nil, malformed("response", 0, fmt.Sprintf("%s is larger than %d bytes", path, MaxFetchSize))
	}
	return body, nil
}

// A ProofBuilder computes inclusion and consistency proofs, and the root
// hash, for one tree size of a tlog-tiles log, from the log's hash tiles.
// Interior nodes are hashed from tile contents (a tile is a subtree of
// height 8); nodes on a partial right edge are rebuilt from the complete
// subtrees that cover them. Tiles are fetched on demand and kept for the
// builder's life. A ProofBuilder is safe for concurrent use.
//
// Tiles are not authenticated: a proof built from a lying log simply does
// not verify. Check every proof against a checkpoint from OpenCheckpoint,
// with VerifyInclusion or VerifyConsistency.
type ProofBuilder struct {
	f    Fetcher
	size uint64

	mu    sync.Mutex
	tiles map[tileKey][]Hash
}

type tileKey struct {
	level uint8
	index uint64
}

// NewProofBuilder returns a ProofBuilder for the tree of size entries,
// usually the size of a verified checkpoint (tlog-tiles clients must not
// fetch partial tiles for sizes no checkpoint vouches for).
func NewProofBuilder(ctx context.Context, f Fetcher, size uint64) (*ProofBuilder, error) {
	if f == nil {
		return nil, fmt.Errorf("%w: nil Fetcher", ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &ProofBuilder{f: f, size: size, tiles: make(map[tileKey][]Hash)}, nil
}

// Size returns the tree size the builder works on.
func (b *ProofBuilder) Size() uint64 { return b.size }

// tile returns the hashes of the tile at level and index as of b.size. A
// partial tile that is gone (404) is read from the full tile that replaced
// it, as tlog-tiles allows.
func (b *ProofBuilder) tile(ctx context.Context, level uint8, index uint64) ([]Hash, error) {
	key := tileKey{level, index}
	b.mu.Lock()
	hs, ok := b.tiles[key]
	b.mu.Unlock()
	if ok {
		return hs, nil
	}
	w := TileWidthAt(level, index, b.size)
	if w == 0 {
		return nil, fmt.Errorf("%w: tile %d/%d does not exist in a tree of size %d", ErrInvalid, level, index, b.size)
	}
	fetched := w
	path := TilePath(level, index, w)
	data, err := b.f.Fetch(ctx, path)
	if errors.Is(err, ErrNotFound) && w < TileWidth {
		fetched = TileWidth
		path = TilePath(level, index, TileWidth)
		data, err = b.f.Fetch(ctx, path)
	}
	if err != nil {
		return nil, err
	}
	hs, err = ParseHashTile(data)
	if err != nil {
		return nil, fmt.Errorf("auditlog: %s: %w", path, err)
	}
	if len(hs) != fetched {
		return nil, malformed("hash tile", 0, fmt.Sprintf("%s holds %d hashes, want %d", path, len(hs), fetched))
	}
	hs = hs[:w:w]
	b.mu.Lock()
	b.tiles[key] = hs
	b.mu.Unlock()
	return hs, nil
}

// node returns the hash of a complete subtree of the tree of b.size: the
// tile holding its leaves at the tile level below it, hashed up.
func (b *ProofBuilder) node(ctx context.Context, id compact.NodeID) (Hash, error) {
	tileLevel := id.Level / TileHeight
	r := id.Level % TileHeight
	first := id.Index << r // index of its first descendant at level tileLevel*8
	hs, err := b.tile(ctx, uint8(tileLevel), first/TileWidth)
	if err != nil {
		return Hash{}, err
	}
	off, n := first%TileWidth, uint64(1)<<r
	if off+n > uint64(len(hs)) {
		return Hash{}, fmt.Errorf("%w: node %d/%d is not complete in a tree of size %d", ErrInvalid, id.Level, id.Index, b.size)
	}
	return perfectRoot(hs[off : off+n]), nil
}

// nodes returns the proof hashes for ns, with ephemeral nodes rehashed.
func (b *ProofBuilder) nodes(ctx context.Context, ns proof.Nodes) ([]Hash, error) {
	raw := make([][]byte, len(ns.IDs))
	for i, id := range ns.IDs {
		h, err := b.node(ctx, id)
		if err != nil {
			return nil, err
		}
		raw[i] = h[:]
	}
	rehashed, err := ns.Rehash(raw, func(left, right []byte) []byte {
		h := NodeHash(Hash(left), Hash(right))
		return h[:]
	})
	if err != nil {
		return nil, fmt.Errorf("auditlog: rehashing proof: %w", err)
	}
	out := make([]Hash, len(rehashed))
	for i, h := range rehashed {
		out[i] = Hash(h)
	}
	return out, nil
}

// Inclusion returns the inclusion proof for the entry at index in the tree
// of b.Size() entries; index must be below the size (else ErrInvalid).
func (b *ProofBuilder) Inclusion(ctx context.Context, index uint64) ([]Hash, error) {
	if index >= b.size {
		return nil, fmt.Errorf("%w: index %d is not below tree size %d", ErrInvalid, index, b.size)
	}
	ns, err := proof.Inclusion(index, b.size)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return b.nodes(ctx, ns)
}

// Consistency returns the consistency proof from the tree of older entries
// to the tree of b.Size() entries; older must not exceed the size (else
// ErrInvalid). The proof is empty when older is 0 or the size.
func (b *ProofBuilder) Consistency(ctx context.Context, older uint64) ([]Hash, error) {
	if older > b.size {
		return nil, fmt.Errorf("%w: older size %d exceeds tree size %d", ErrInvalid, older, b.size)
	}
	ns, err := proof.Consistency(older, b.size)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return b.nodes(ctx, ns)
}

// Root returns the root hash of the tree of b.Size() entries, recomputed
// from the tiles. Compare it with a verified checkpoint's Hash.
func (b *ProofBuilder) Root(ctx context.Context) (Hash, error) {
	if b.size == 0 {
		return EmptyRoot(), nil
	}
	ids := compact.RangeNodes(0, b.size, nil)
	root, err := b.node(ctx, ids[len(ids)-1])
	if err != nil {
		return Hash{}, err
	}
	for i := len(ids) - 2; i >= 0; i-- {
		h, err := b.node(ctx, ids[i])
		if err != nil {
			return Hash{}, err
		}
		root = NodeHash(h, root)
	}
	return root, nil
}
