// Command tlogappend measures durable appends to custos's audit log
// (internal/tlog over internal/store/sqlite) and, in the same run, on the
// same disk and with the same entries and concurrency, to tessera v1.0.4's
// POSIX driver, and prints both and their ratio.
//
//	cd bench/tlogappend && go run . [-n 2000000] [-c 2048] [-side both|custos|tessera] [-dir .]
//
// Each side gets a fresh directory under a temporary directory made in
// -dir (default: the current directory, so both run on the disk the
// repository is on). N entries of -size bytes are generated up front
// (entry i starts with i in big-endian, then pseudo-random bytes, so no two
// are equal); C goroutines take the next index and append it, timing each
// append from the call until it is acknowledged:
//
//   - custos: Log.Append returns once the entry's group commit is in
//     SQLite's WAL with synchronous=FULL (fsync of the WAL) and the entry
//     has its index. The Merkle tiles and signed checkpoint follow
//     asynchronously (at most CheckpointInterval, 500 ms, later).
//   - tessera: from Appender.Add until its IndexFuture resolves. For the
//     POSIX driver that is after the batch's entry bundles, the hash tiles
//     and the tree state were written (each file with O_SYNC, renamed into
//     place and its directory fsynced): durable, sequenced and integrated.
//     The checkpoint is published asynchronously (CheckpointInterval).
//
// Tessera batches appends itself (WithBatching): by default here a batch
// holds up to -c entries or waits 50 ms, which was tessera's best setting of
// those tried on this machine (its own defaults, 256 entries or 250 ms,
// were slower); antispam (deduplication) is off, as it is unless asked for.
// Custos commits whatever is waiting when the previous commit ends.
//
// So a tessera acknowledgement covers more work (integration) than a
// custos one. Both runs therefore also report the time until a signed
// checkpoint covers all N entries, which is the same end state on both
// sides: every entry durable, in the tree and in a signed checkpoint.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store/sqlite"
	"github.com/custos-dev/custos/internal/tlog"
)

const origin = "bench.custos.test/audit"

type options struct {
	n, c, size      int
	dir             string
	side            string
	keep            bool
	cpuprofile      string
	cpInterval      time.Duration
	tesseraBatch    int
	tesseraBatchAge time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 2_000_000, "entries to append (per side)")
	flag.IntVar(&o.c, "c", 2048, "concurrent appenders")
	flag.IntVar(&o.size, "size", 256, "entry size in bytes (≥ 8)")
	flag.StringVar(&o.dir, "dir", ".", "where to make the temporary directory for both logs")
	flag.StringVar(&o.side, "side", "both", "custos, tessera or both")
	flag.BoolVar(&o.keep, "keep", false, "keep the logs' directory")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the custos side to this file")
	flag.DurationVar(&o.cpInterval, "checkpoint-interval", 500*time.Millisecond, "checkpoint interval on both sides (custos's default is 500ms; tessera's minimum is 100ms)")
	flag.IntVar(&o.tesseraBatch, "tessera-batch", 0, "tessera's batch max size (WithBatching; its default is 256); 0 means -c, so one batch can hold every waiting append")
	flag.DurationVar(&o.tesseraBatchAge, "tessera-batch-age", 50*time.Millisecond, "tessera's batch max age (WithBatching; its default is 250ms)")
	flag.Parse()
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "tlogappend:", err)
		os.Exit(1)
	}
}

// result is one side's measurement.
type result struct {
	name       string
	n          int
	ack        time.Duration // first append started → last acknowledged
	checkpoint time.Duration // first append started → a signed checkpoint covers all n
	lat        []time.Duration
	load       [2]string // load average before and after
}

func (r result) rate() float64   { return float64(r.n) / r.ack.Seconds() }
func (r result) cpRate() float64 { return float64(r.n) / r.checkpoint.Seconds() }

func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(p * float64(len(r.lat)))
	return r.lat[min(i, len(r.lat)-1)]
}

func run(ctx context.Context, o options) error {
	if o.size < 8 || o.size > tlog.MaxEntrySize || o.n <= 0 || o.c <= 0 {
		return errors.New("need -n > 0, -c > 0 and 8 ≤ -size ≤ 65535")
	}
	if o.tesseraBatch <= 0 {
		o.tesseraBatch = o.c
	}
	doCustos, doTessera := o.side == "both" || o.side == "custos", o.side == "both" || o.side == "tessera"
	if !doCustos && !doTessera {
		return fmt.Errorf("-side %q: want custos, tessera or both", o.side)
	}
	root, err := os.MkdirTemp(o.dir, "tlogappend-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Printf("logs kept in %s\n", root)
	} else {
		defer os.RemoveAll(root)
	}
	abs, _ := filepath.Abs(root)
	fmt.Printf("tlogappend: n=%d c=%d size=%d dir=%s GOMAXPROCS=%d %s\n", o.n, o.c, o.size, abs, runtime.GOMAXPROCS(0), runtime.Version())
	fmt.Printf("checkpoint interval %v on both sides; tessera batches of at most %d entries or %v\n", o.cpInterval, o.tesseraBatch, o.tesseraBatchAge)

	entries := makeEntries(o.n, o.size)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}

	var results []result
	if doCustos {
		r, err := runCustos(ctx, o, filepath.Join(root, "custos"), key, entries)
		if err != nil {
			return fmt.Errorf("custos: %w", err)
		}
		results = append(results, r)
		report(r)
	}
	if doTessera {
		if doCustos {
			runtime.GC()
		}
		r, err := runTessera(ctx, o, filepath.Join(root, "tessera"), key, entries)
		if err != nil {
			return fmt.Errorf("tessera: %w", err)
		}
		results = append(results, r)
		report(r)
	}
	if len(results) == 2 {
		c, t := results[0], results[1]
		fmt.Printf("\nratio custos/tessera: %.2f× acknowledged appends/s, %.2f× to a signed checkpoint; p99 latency %.2f ms vs %.2f ms\n",
			c.rate()/t.rate(), c.cpRate()/t.cpRate(), float64(c.pct(0.99).Microseconds())/1000, float64(t.pct(0.99).Microseconds())/1000)
	}
	return nil
}

// makeEntries returns n distinct entries of size bytes: the index, then
// pseudo-random bytes.
func makeEntries(n, size int) [][]byte {
	slab := make([]byte, n*size)
	rng := mrand.NewChaCha8([32]byte{'t', 'l', 'o', 'g'})
	rng.Read(slab)
	out := make([][]byte, n)
	for i := range out {
		e := slab[i*size : (i+1)*size : (i+1)*size]
		binary.BigEndian.PutUint64(e, uint64(i))
		out[i] = e
	}
	return out
}

// drive runs c appenders over entries, each calling add and timing it.
func drive(c int, entries [][]byte, add func(e []byte) error) (time.Duration, []time.Duration, error) {
	var next atomic.Int64
	lats := make([][]time.Duration, c)
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for w := range c {
		wg.Go(func() {
			mine := make([]time.Duration, 0, len(entries)/c+1)
			for {
				i := next.Add(1) - 1
				if i >= int64(len(entries)) {
					break
				}
				t0 := time.Now()
				if err := add(entries[i]); err != nil {
					errOnce.Do(func() { firstErr = err })
					next.Store(int64(len(entries)))
					break
				}
				mine = append(mine, time.Since(t0))
			}
			lats[w] = mine
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lats...)
	slices.Sort(all)
	return elapsed, all, firstErr
}

func runCustos(ctx context.Context, o options, dir string, key ed25519.PrivateKey, entries [][]byte) (result, error) {
	r := result{name: "custos internal/tlog + SQLite (WAL, synchronous=FULL)", n: len(entries)}
	st, err := sqlite.Open(ctx, dir)
	if err != nil {
		return r, err
	}
	defer st.Close()
	signer, err := auditlog.NewNoteSigner(origin, key)
	if err != nil {
		return r, err
	}
	vkey, err := note.NewEd25519VerifierKey(origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		return r, err
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return r, err
	}
	l, err := tlog.Open(ctx, st, tlog.Config{
		Origin: origin, Key: signer, Verifier: verifier,
		CheckpointFile:     filepath.Join(dir, "checkpoint"),
		CheckpointInterval: o.cpInterval,
	})
	if err != nil {
		return r, err
	}
	defer l.Close()

	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return r, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return r, err
		}
		defer pprof.StopCPUProfile()
	}
	r.load[0] = loadavg()
	start := time.Now()
	r.ack, r.lat, err = drive(o.c, entries, func(e []byte) error {
		_, err := l.Append(ctx, e)
		return err
	})
	if err != nil {
		return r, err
	}
	for {
		if _, cp := l.Checkpoint(); cp.Size >= uint64(len(entries)) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	r.checkpoint = time.Since(start)
	r.load[1] = loadavg()
	return r, l.Close()
}

func runTessera(ctx context.Context, o options, dir string, key ed25519.PrivateKey, entries [][]byte) (result, error) {
	r := result{name: "tessera v1.0.4 storage/posix", n: len(entries)}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The same key and note signer as the custos side.
	signer, err := auditlog.NewNoteSigner(origin, key)
	if err != nil {
		return r, err
	}
	drv, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		return r, err
	}
	// No antispam (deduplication): it is opt-in, with WithAntispam.
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithCheckpointInterval(o.cpInterval).
		WithBatching(uint(o.tesseraBatch), o.tesseraBatchAge)
	app, shutdown, reader, err := tessera.NewAppender(ctx, drv, opts)
	if err != nil {
		return r, err
	}
	r.load[0] = loadavg()
	start := time.Now()
	r.ack, r.lat, err = drive(o.c, entries, func(e []byte) error {
		_, err := app.Add(ctx, tessera.NewEntry(e))()
		return err
	})
	if err != nil {
		return r, err
	}
	for {
		raw, err := reader.ReadCheckpoint(ctx)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return r, err
		}
		if size, ok := checkpointSize(raw); ok && size >= uint64(len(entries)) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	r.checkpoint = time.Since(start)
	r.load[1] = loadavg()
	return r, shutdown(ctx)
}

// checkpointSize reads the size line of a checkpoint note.
func checkpointSize(raw []byte) (uint64, bool) {
	lines := strings.SplitN(string(raw), "\n", 3)
	if len(lines) < 3 {
		return 0, false
	}
	n, err := strconv.ParseUint(lines[1], 10, 64)
	return n, err == nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func report(r result) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
	fmt.Printf("\n%s\n", r.name)
	fmt.Printf("  acknowledged   %d entries in %v: %.0f entries/s\n", r.n, r.ack.Round(time.Millisecond), r.rate())
	fmt.Printf("  in checkpoint  all %d after %v: %.0f entries/s\n", r.n, r.checkpoint.Round(time.Millisecond), r.cpRate())
	fmt.Printf("  append latency p50 %s, p99 %s, p99.9 %s, max %s\n", ms(r.pct(0.50)), ms(r.pct(0.99)), ms(r.pct(0.999)), ms(r.pct(1)))
	fmt.Printf("  load average   %s before, %s after\n", r.load[0], r.load[1])
}
