package sqlite

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWALStaysBounded appends audit-log chunks from several goroutines with
// no pause between commits, so that a checkpoint running beside the writer
// never finds every frame copied, and checks that the WAL is still started
// again from its beginning. SQLite reuses the WAL file after a restart
// rather than shrinking it, so the file's size is the WAL's high-water mark.
func TestWALStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("appends three times walRestartSize bytes")
	}
	ctx := t.Context()
	dir := t.TempDir()
	st, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.InitLog(ctx, "example.com/audit"); err != nil {
		t.Fatal(err)
	}

	// Chunks small enough to be kept in the database, not a segment.
	const n, size, writers = inlineBytes / (2 + 256), 256, 4
	const target = 3 * walRestartSize
	chunk := make([]byte, 0, n*(2+size))
	for i := range n {
		chunk = binary.BigEndian.AppendUint16(chunk, size)
		for j := range size {
			chunk = append(chunk, byte(i+j))
		}
	}

	// Sample the WAL's size while appending.
	wal := filepath.Join(dir, FileName) + "-wal"
	stop := make(chan struct{})
	largest := make(chan int64)
	go func() {
		var m int64
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if fi, err := os.Stat(wal); err == nil {
				m = max(m, fi.Size())
			}
			select {
			case <-stop:
				largest <- m
				return
			case <-tick.C:
			}
		}
	}()

	start := time.Now()
	var appended atomic.Int64
	var chunks atomic.Uint64
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for appended.Load() < target {
				if _, err := st.AppendChunk(ctx, n, chunk); err != nil {
					errs <- err
					return
				}
				chunks.Add(1)
				appended.Add(int64(len(chunk)))
			}
		})
	}
	wg.Wait()
	close(stop)
	maxWAL := <-largest
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	t.Logf("appended %d MiB in %d chunks in %v; the WAL reached %.1f MiB",
		appended.Load()>>20, chunks.Load(), time.Since(start).Round(time.Millisecond), float64(maxWAL)/(1<<20))

	if maxWAL >= 2*walRestartSize {
		t.Fatalf("the WAL reached %d bytes (%.1f MiB) while %d bytes were appended; it should have been started again once past %d bytes and stayed below %d",
			maxWAL, float64(maxWAL)/(1<<20), appended.Load(), walRestartSize, 2*walRestartSize)
	}
	ls, err := st.LogState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := chunks.Load() * n; ls.Sequenced != want {
		t.Fatalf("the log has %d entries, want the %d appended", ls.Sequenced, want)
	}
}
