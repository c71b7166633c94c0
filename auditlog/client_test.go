package auditlog

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// sample returns every value below n if n is small, otherwise the edges
// and a spread of values in between.
func sample(n uint64) []uint64 {
	if n <= 600 {
		out := make([]uint64, n)
		for i := range out {
			out[i] = uint64(i)
		}
		return out
	}
	var out []uint64
	for i := uint64(0); i < 40; i++ {
		out = append(out, i, n-1-i)
	}
	for i := uint64(40); i < n-40; i += 997 {
		out = append(out, i)
	}
	for _, i := range []uint64{255, 256, 257, 511, 512, 65535, 65536, 65537} {
		if i < n {
			out = append(out, i)
		}
	}
	return out
}

func TestProofBuilder(t *testing.T) {
	const maxSize = 65536 + 3
	rt := buildRefTree(t, maxSize)
	ctx := context.Background()
	for _, n := range []uint64{0, 1, 2, 3, 7, 8, 255, 256, 257, 300, 511, 512, 513, 1000, 65535, 65536, 65536 + 3} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			files := make(map[string][]byte)
			rt.tilesAt(files, n)
			f := &memFetcher{files: files}
			b, err := NewProofBuilder(ctx, f, n)
			if err != nil {
				t.Fatal(err)
			}
			if b.Size() != n {
				t.Errorf("Size() = %d", b.Size())
			}
			wantRoot := rt.roots[n]
			root, err := b.Root(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if root != wantRoot {
				t.Fatalf("Root = %v, want %v", root, wantRoot)
			}
			cp := Checkpoint{Origin: testOrigin, Size: n, Hash: root}
			for _, i := range sample(n) {
				p, err := b.Inclusion(ctx, i)
				if err != nil {
					t.Fatalf("Inclusion(%d): %v", i, err)
				}
				if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, n, rt.leaves[i], hashSlices(p), wantRoot[:]); err != nil {
					t.Fatalf("merkle rejects inclusion of %d: %v", i, err)
				}
				if err := VerifyInclusion(cp, i, Hash(rt.leaves[i]), p); err != nil {
					t.Fatalf("VerifyInclusion(%d): %v", i, err)
				}
			}
			olds := append(sample(n), n)
			for _, m := range olds {
				p, err := b.Consistency(ctx, m)
				if err != nil {
					t.Fatalf("Consistency(%d): %v", m, err)
				}
				oldRoot := rt.roots[m]
				if err := proof.VerifyConsistency(rfc6962.DefaultHasher, m, n, hashSlices(p), oldRoot[:], wantRoot[:]); err != nil {
					t.Fatalf("merkle rejects consistency %d→%d: %v", m, n, err)
				}
				if err := VerifyConsistency(Checkpoint{Origin: testOrigin, Size: m, Hash: oldRoot}, cp, p); err != nil {
					t.Fatalf("VerifyConsistency(%d→%d): %v", m, n, err)
				}
			}
			if _, err := b.Inclusion(ctx, n); !errors.Is(err, ErrInvalid) {
				t.Errorf("Inclusion(size) error = %v", err)
			}
			if _, err := b.Consistency(ctx, n+1); !errors.Is(err, ErrInvalid) {
				t.Errorf("Consistency(size+1) error = %v", err)
			}
			// Tiles are cached: nothing is fetched twice.
			before := f.fetches
			if _, err := b.Root(ctx); err != nil {
				t.Fatal(err)
			}
			if f.fetches != before {
				t.Errorf("Root fetched %d tiles again", f.fetches-before)
			}
			if f.fetches > len(files) {
				t.Errorf("%d fetches for %d tiles", f.fetches, len(files))
			}
		})
	}
}

// A partial tile that was replaced by its full tile is read from the full
// tile; a tile missing altogether is ErrNotFound; a tile of the wrong
// length is ErrMalformed; a tile with wrong hashes yields proofs that fail.
func TestProofBuilderTileFaults(t *testing.T) {
	ctx := context.Background()
	rt := buildRefTree(t, 1100)
	grown := make(map[string][]byte)
	rt.tilesAt(grown, 1000)
	rt.tilesAt(grown, 1100)
	// The log has grown to 1100 and deleted the partial level-0 tile of
	// size 1000, whose full tile now exists.
	delete(grown, "tile/0/003.p/232")
	b, err := NewProofBuilder(ctx, &memFetcher{files: grown}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if root, err := b.Root(ctx); err != nil || root != rt.roots[1000] {
		t.Fatalf("Root from full tiles = %v, %v", root, err)
	}
	p, err := b.Inclusion(ctx, 999)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyInclusion(Checkpoint{Size: 1000, Hash: rt.roots[1000]}, 999, Hash(rt.leaves[999]), p); err != nil {
		t.Fatal(err)
	}

	old := make(map[string][]byte)
	rt.tilesAt(old, 1000) // the log never published size 1100
	b, _ = NewProofBuilder(ctx, &memFetcher{files: old}, 1100)
	if _, err := b.Root(ctx); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing tile: error = %v", err)
	}

	short := make(map[string][]byte)
	rt.tilesAt(short, 1000)
	short["tile/0/003.p/232"] = short["tile/0/003.p/232"][:231*32]
	b, _ = NewProofBuilder(ctx, &memFetcher{files: short}, 1000)
	if _, err := b.Inclusion(ctx, 999); !errors.Is(err, ErrMalformed) {
		t.Errorf("short tile: error = %v", err)
	}
	grownShort := make(map[string][]byte)
	rt.tilesAt(grownShort, 1000)
	rt.tilesAt(grownShort, 1100)
	delete(grownShort, "tile/0/003.p/232")
	grownShort["tile/0/003"] = grownShort["tile/0/003"][:255*32]
	b, _ = NewProofBuilder(ctx, &memFetcher{files: grownShort}, 1000)
	if _, err := b.Inclusion(ctx, 999); !errors.Is(err, ErrMalformed) {
		t.Errorf("short full tile: error = %v", err)
	}

	lying := make(map[string][]byte)
	rt.tilesAt(lying, 1000)
	// Corrupt leaf 773 in the partial tile the root is computed from.
	lying["tile/0/003.p/232"] = append([]byte(nil), lying["tile/0/003.p/232"]...)
	lying["tile/0/003.p/232"][5*32] ^= 1
	b, _ = NewProofBuilder(ctx, &memFetcher{files: lying}, 1000)
	cp := Checkpoint{Size: 1000, Hash: rt.roots[1000]}
	p, err = b.Inclusion(ctx, 772) // leaf 773 is its sibling
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyInclusion(cp, 772, Hash(rt.leaves[772]), p); !errors.Is(err, ErrProof) {
		t.Errorf("proof from a lying tile: error = %v", err)
	}
	if root, _ := b.Root(ctx); root == cp.Hash {
		t.Error("root from a lying tile matches")
	}

	if _, err := NewProofBuilder(ctx, nil, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil fetcher: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := NewProofBuilder(cancelled, &memFetcher{}, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestProofBuilderConcurrent(t *testing.T) {
	ctx := context.Background()
	rt := buildRefTree(t, 3000)
	files := make(map[string][]byte)
	rt.tilesAt(files, 3000)
	b, err := NewProofBuilder(ctx, &memFetcher{files: files}, 3000)
	if err != nil {
		t.Fatal(err)
	}
	cp := Checkpoint{Size: 3000, Hash: rt.roots[3000]}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := uint64(g); i < 3000; i += 97 {
				p, err := b.Inclusion(ctx, i)
				if err == nil {
					err = VerifyInclusion(cp, i, Hash(rt.leaves[i]), p)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestHTTPFetcher(t *testing.T) {
	ctx := context.Background()
	rt := buildRefTree(t, 300)
	files := map[string][]byte{"checkpoint": []byte("a checkpoint\n")}
	rt.tilesAt(files, 300)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /log/", func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimPrefix(r.URL.Path, "/log/")
		switch path {
		case "broken":
			http.Error(w, "oops", http.StatusInternalServerError)
			return
		case "huge":
			w.Write(make([]byte, MaxFetchSize+1))
			return
		case "largest":
			w.Write(make([]byte, MaxFetchSize))
			return
		}
		b, ok := files[path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, base := range []string{srv.URL + "/log", srv.URL + "/log/"} {
		f := HTTPFetcher{Base: base, Client: srv.Client()}
		got, err := f.Fetch(ctx, "checkpoint")
		if err != nil || string(got) != "a checkpoint\n" {
			t.Errorf("Fetch(checkpoint) from %s = %q, %v", base, got, err)
		}
	}
	f := HTTPFetcher{Base: srv.URL + "/log", Client: srv.Client()}
	_, err := f.Fetch(ctx, "tile/9/000")
	se, ok := errors.AsType[*StatusError](err)
	if !errors.Is(err, ErrNotFound) || !ok || se.StatusCode != 404 || se.Path != "tile/9/000" {
		t.Errorf("404: error = %v", err)
	}
	_, err = f.Fetch(ctx, "broken")
	if se, ok := errors.AsType[*StatusError](err); !ok || se.StatusCode != 500 || errors.Is(err, ErrNotFound) {
		t.Errorf("500: error = %v", err)
	}
	if _, err := f.Fetch(ctx, "huge"); !errors.Is(err, ErrMalformed) {
		t.Errorf("oversized body: error = %v", err)
	}
	if b, err := f.Fetch(ctx, "largest"); err != nil || len(b) != MaxFetchSize {
		t.Errorf("largest body: %d bytes, %v", len(b), err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.Fetch(cancelled, "checkpoint"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: error = %v", err)
	}

	// A ProofBuilder over HTTP.
	b, err := NewProofBuilder(ctx, f, 300)
	if err != nil {
		t.Fatal(err)
	}
	root, err := b.Root(ctx)
	if err != nil || root != rt.roots[300] {
		t.Fatalf("Root over HTTP = %v, %v", root, err)
	}
	p, err := b.Consistency(ctx, 257)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyConsistency(Checkpoint{Size: 257, Hash: rt.roots[257]}, Checkpoint{Size: 300, Hash: root}, p); err != nil {
		t.Error(err)
	}
}
