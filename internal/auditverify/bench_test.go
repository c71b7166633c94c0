package auditverify_test

import (
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/auditverify"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/store/sqlite"
)

// BenchmarkVerify verifies a log of 2^17 events of about 256 bytes (in
// chunks of 4,096, a checkpoint every 2^15) and reports entries per
// second. bench/auditverify does the same for 10 million entries.
//
//	go test ./internal/auditverify -run '^$' -bench Verify -benchtime 5x
func BenchmarkVerify(b *testing.B) {
	const n, chunk, every = 1 << 17, 4096, 1 << 15
	dir := b.TempDir()
	key := newKey(b)
	st, err := sqlite.Open(b.Context(), dir)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.InsertNoteKey(b.Context(), store.NoteKey{Name: origin, Public: key.Public().(ed25519.PublicKey), Sealed: []byte("-"), Sealer: "bench", Created: time.Now()}); err != nil {
		b.Fatal(err)
	}
	integrate := func() {
		l, err := openLog(b.Context(), st, key)
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
	integrate()
	pad := strings.Repeat("x", 26)
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for first := uint64(0); first < n; first += chunk {
		var data []byte
		for i := first; i < first+chunk; i++ {
			e := event.Event{ID: fmt.Sprintf("%032x", i), Time: base.Add(time.Duration(i) * time.Second),
				Class: event.ClassAccess, Type: "personal_data_read", Actor: "client:shop", Subject: fmt.Sprintf("acc_%010d", i),
				Client: "shop", IP: "203.0.113.7", Fields: map[string]any{"jti": fmt.Sprintf("%022d", i), "categories": "address,phone", "pad": pad}}
			raw, err := event.Marshal(e)
			if err != nil {
				b.Fatal(err)
			}
			data = append(data, byte(len(raw)>>8), byte(len(raw)))
			data = append(data, raw...)
		}
		if err := st.Sequence(b.Context(), store.Chunk{First: first, Count: chunk, Data: data}); err != nil {
			b.Fatal(err)
		}
		if (first+chunk)%every == 0 {
			integrate()
		}
	}
	b.ResetTimer()
	for b.Loop() {
		rep, err := auditverify.Verify(b.Context(), st, auditverify.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if !rep.Intact || rep.EntriesChecked != n {
			b.Fatalf("benchmark log:\n%s", rep)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
