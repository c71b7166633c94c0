// Command auditverify measures `custos audit verify` on a large audit log.
//
// With -build it creates, in -dir, a custos database whose audit log holds
// -n canonical audit events of about -entry-size bytes each: chunks are
// written straight through the store (as the log's group commit writes
// them), and every -checkpoint-every entries the Merkle log is opened,
// which integrates what was written (tiles with interior rows) and signs a
// checkpoint. It prints how long building took.
//
// With -verify it runs auditverify.Verify on the database in -dir, exactly
// as `custos audit verify --data DIR` does, and prints the time, the
// entries per second and the process's peak resident memory (VmHWM).
// Building and verifying are separate runs so that the peak is verify's
// alone.
//
// From the repository root:
//
//	go run ./bench/auditverify -build -dir /tmp/av10m -n 10000000
//	go run ./bench/auditverify -verify -dir /tmp/av10m
//	/usr/bin/time -v go run ./cmd/custos audit verify --data /tmp/av10m
//
// It reads /proc, so the memory figure is Linux only.
package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/auditverify"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/store/sqlite"
	"github.com/custos-dev/custos/internal/tlog"
)

const origin = "bench.custos.example/audit/00000000"

func main() {
	build := flag.Bool("build", false, "build the log")
	verify := flag.Bool("verify", false, "verify the log")
	dir := flag.String("dir", "", "data directory (required)")
	n := flag.Uint64("n", 10_000_000, "entries to build")
	size := flag.Int("entry-size", 256, "approximate entry size in bytes")
	chunk := flag.Uint64("chunk", 4096, "entries per stored chunk (one commit)")
	every := flag.Uint64("checkpoint-every", 1_000_000, "entries between signed checkpoints")
	cpuprofile := flag.String("cpuprofile", "", "with -verify, write a CPU profile to this file")
	flag.Parse()
	if *dir == "" || *build == *verify {
		fmt.Fprintln(os.Stderr, "usage: auditverify -build|-verify -dir DIR [-n N]")
		os.Exit(2)
	}
	ctx := context.Background()
	var err error
	if *build {
		err = buildLog(ctx, *dir, *n, *size, *chunk, *every)
	} else {
		err = verifyLog(ctx, *dir, *cpuprofile)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "auditverify:", err)
		os.Exit(1)
	}
}

func buildLog(ctx context.Context, dir string, n uint64, size int, chunk, every uint64) error {
	if _, err := os.Stat(filepath.Join(dir, sqlite.FileName)); err == nil {
		return fmt.Errorf("%s already holds a database", dir)
	}
	start := time.Now()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	st, err := sqlite.Open(ctx, dir)
	if err != nil {
		return err
	}
	defer st.Close()
	// Only the public key is kept: verification needs nothing else.
	if err := st.InsertNoteKey(ctx, store.NoteKey{Name: origin, Public: pub, Sealed: []byte("bench: not sealed"), Sealer: "bench", Created: time.Now()}); err != nil {
		return err
	}
	integrate := func() error {
		l, err := openLog(ctx, st, key)
		if err != nil {
			return err
		}
		return l.Close()
	}
	if err := integrate(); err != nil { // creates the log
		return err
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pad := strings.Repeat("x", max(0, size-230))
	var buf []byte
	var next uint64
	for next < n {
		end := min(n, next+every)
		for next < end {
			c := store.Chunk{First: next, Count: min(chunk, end-next)}
			buf = buf[:0]
			for i := c.First; i < c.First+c.Count; i++ {
				e := event.Event{
					ID: fmt.Sprintf("%032x", i), Time: base.Add(time.Duration(i) * time.Millisecond),
					Class: event.ClassAccess, Type: "personal_data_read", Actor: "client:shop",
					Subject: fmt.Sprintf("acc_%010d", i%1_000_000), Client: "shop", IP: "203.0.113.7",
					Fields: map[string]any{"jti": fmt.Sprintf("%022d", i), "categories": "address,phone", "pad": pad},
				}
				b, err := event.Marshal(e)
				if err != nil {
					return err
				}
				buf = append(buf, byte(len(b)>>8), byte(len(b)))
				buf = append(buf, b...)
			}
			c.Data = buf
			if err := st.Sequence(ctx, c); err != nil {
				return err
			}
			next += c.Count
		}
		if err := integrate(); err != nil {
			return err
		}
		fmt.Printf("%d entries, %s\n", next, time.Since(start).Round(time.Second))
	}
	fi, _ := os.Stat(filepath.Join(dir, sqlite.FileName))
	var dbSize int64
	if fi != nil {
		dbSize = fi.Size()
	}
	fmt.Printf("built %d entries in %s; database %d MiB\n", n, time.Since(start).Round(time.Millisecond), dbSize>>20)
	return nil
}

func openLog(ctx context.Context, st *sqlite.Store, key ed25519.PrivateKey) (*tlog.Log, error) {
	signer, err := auditlog.NewNoteSigner(origin, key)
	if err != nil {
		return nil, err
	}
	vkey, err := note.NewEd25519VerifierKey(origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	return tlog.Open(ctx, st, tlog.Config{Origin: origin, Key: signer, Verifier: v})
}

func verifyLog(ctx context.Context, dir, cpuprofile string) error {
	if _, err := os.Stat(filepath.Join(dir, sqlite.FileName)); err != nil {
		return err
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	st, err := sqlite.Open(ctx, dir)
	if err != nil {
		return err
	}
	defer st.Close()
	start := time.Now()
	rep, err := auditverify.Verify(ctx, st, auditverify.Options{})
	if err != nil {
		return err
	}
	d := time.Since(start)
	fmt.Print(rep)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	hwm, err := vmHWM()
	if err != nil {
		return err
	}
	fmt.Printf("verified %d entries in %s: %.0f entries/s; peak RSS (VmHWM) %d MiB; Go heap in use %d MiB, total allocated %d MiB; GOMAXPROCS %d\n",
		rep.EntriesChecked, d.Round(time.Millisecond), float64(rep.EntriesChecked)/d.Seconds(), hwm>>10,
		ms.HeapInuse>>20, ms.TotalAlloc>>20, runtime.GOMAXPROCS(0))
	if !rep.Intact {
		return errors.New("the log is not intact")
	}
	return nil
}

// vmHWM returns the process's peak resident set in KiB.
func vmHWM() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if _, err := fmt.Sscanf(sc.Text(), "VmHWM: %d kB", &kb); err == nil {
			return kb, nil
		}
	}
	return 0, errors.New("no VmHWM in /proc/self/status")
}
