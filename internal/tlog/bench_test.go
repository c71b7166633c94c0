package tlog_test

import (
	"slices"
	"sync"
	"testing"
	"time"
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
	b.SetParallelism(512)
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
