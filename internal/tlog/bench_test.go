package tlog_test

import (
	"crypto/ed25519"
	"crypto/rand"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store/sqlite"
)

// BenchmarkAppend measures durable appends of 256-byte entries from many
// concurrent callers, and the latency from Append to acknowledgement.
func BenchmarkAppend(b *testing.B) {
	f := newFixture(b)
	defer f.close(b)
	entry := make([]byte, 256)
	for i := range entry {
		entry[i] = byte('a' + i%26)
	}
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(1024)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mine := make([]time.Duration, 0, 1024)
		for pb.Next() {
			start := time.Now()
			if _, err := f.log.Append(b.Context(), entry); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	}
}

// BenchmarkInclusionProof measures inclusion proofs for random entries of a
// 2^20-entry log, read from the stored tiles.
func BenchmarkInclusionProof(b *testing.B) {
	const size = 1 << 20
	f := &fixture{dir: b.TempDir()}
	_, f.key, _ = ed25519.GenerateKey(rand.Reader)
	var err error
	if f.verifier, err = note.NewVerifier(mustVKey(b, f.key)); err != nil {
		b.Fatal(err)
	}
	st, err := sqlite.Open(b.Context(), f.dir)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.InitLog(b.Context(), origin); err != nil {
		b.Fatal(err)
	}
	e := make([]byte, 256)
	var chunk []byte
	for range 4096 {
		chunk, _ = auditlog.AppendEntryBundle(chunk, e)
	}
	for range size / 4096 {
		if _, err := st.AppendChunk(b.Context(), 4096, chunk); err != nil {
			b.Fatal(err)
		}
	}
	st.Close()
	f.open(b) // integrates all of it
	defer f.close(b)
	_, cp := f.log.Checkpoint()
	if cp.Size != size {
		b.Fatalf("checkpoint size %d", cp.Size)
	}
	leaf := auditlog.LeafHash(e)
	// Proofs are asked for by many clients at once: four per core.
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := mrand.New(mrand.NewPCG(mrand.Uint64(), 1))
		for pb.Next() {
			i := r.Uint64N(size)
			p, err := f.log.InclusionProof(b.Context(), i, size)
			if err != nil {
				b.Error(err)
				return
			}
			if i%1024 == 0 {
				if err := auditlog.VerifyInclusion(cp, i, leaf, p); err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "proofs/s")
}
