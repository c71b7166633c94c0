package storetest

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/store"
)

// testWitness checks both sides of witnessing: a witness's own state (its
// name, and per log the latest checkpoint it cosigned, moved only by a
// compare-and-swap that never goes back) and the log's record of the
// cosignatures witnesses returned.
func testWitness(t *testing.T, b Backend) {
	ctx := t.Context()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	// A witness keeps the name it was created with.
	_, err := b.WitnessName(ctx)
	mustErr(t, err, store.ErrNotFound)
	name, err := b.InitWitness(ctx, "witness.example/w1")
	must(t, err)
	if name != "witness.example/w1" {
		t.Fatalf("InitWitness = %q", name)
	}
	name, err = b.InitWitness(ctx, "witness.example/other")
	must(t, err)
	if name != "witness.example/w1" {
		t.Fatalf("witness renamed to %q", name)
	}
	if name, err = b.WitnessName(ctx); err != nil || name != "witness.example/w1" {
		t.Fatalf("WitnessName = %q, %v", name, err)
	}

	// Per log, the record moves only by compare-and-swap on its size.
	const origin = "log.example/a"
	rec := func(size uint64, root byte, at time.Time) store.WitnessLog {
		return store.WitnessLog{Origin: origin, Size: size, Root: bytes.Repeat([]byte{root}, 32),
			Checkpoint: []byte("cp " + string('0'+rune(size%10)) + "\n"), Time: at}
	}
	_, err = b.WitnessLog(ctx, origin)
	mustErr(t, err, store.ErrNotFound)
	mustErr(t, b.SetWitnessLog(ctx, 3, rec(5, 1, t0)), store.ErrConflict) // no record is size 0
	_, err = b.WitnessLog(ctx, origin)
	mustErr(t, err, store.ErrNotFound)
	must(t, b.SetWitnessLog(ctx, 0, rec(5, 1, t0)))
	got, err := b.WitnessLog(ctx, origin)
	must(t, err)
	if want := rec(5, 1, t0); !reflect.DeepEqual(got, want) {
		t.Fatalf("WitnessLog = %+v, want %+v", got, want)
	}
	steps := []struct {
		name string
		from uint64
		next store.WitnessLog
		want error
	}{
		{"stale from zero", 0, rec(7, 2, t0), store.ErrConflict},
		{"wrong from", 4, rec(7, 2, t0), store.ErrConflict},
		{"backwards", 5, rec(4, 2, t0), store.ErrConflict},
		{"same size", 5, rec(5, 1, t0.Add(time.Second)), nil},
		{"forward", 5, rec(9, 3, t0.Add(2*time.Second)), nil},
		{"old from after moving", 5, rec(12, 4, t0), store.ErrConflict},
	}
	for _, s := range steps {
		err := b.SetWitnessLog(ctx, s.from, s.next)
		if s.want == nil {
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			continue
		}
		if !errors.Is(err, s.want) {
			t.Fatalf("%s: %v, want %v", s.name, err, s.want)
		}
	}
	got, err = b.WitnessLog(ctx, origin)
	must(t, err)
	if want := rec(9, 3, t0.Add(2*time.Second)); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the steps WitnessLog = %+v, want %+v", got, want)
	}
	// Another origin is a separate record.
	other := rec(1, 9, t0)
	other.Origin = "log.example/b"
	must(t, b.SetWitnessLog(ctx, 0, other))
	if got, err := b.WitnessLog(ctx, origin); err != nil || got.Size != 9 {
		t.Fatalf("first log after writing another: %+v, %v", got, err)
	}

	// Racing updates from the same size: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := range 8 {
		wg.Go(func() {
			err := b.SetWitnessLog(context.Background(), 9, rec(10+uint64(i), byte(10+i), t0))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case !errors.Is(err, store.ErrConflict):
				t.Errorf("racing update: %v", err)
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d racing updates from the same size succeeded, want 1", won)
	}

	// The log side: cosignatures go into the stored checkpoint note.
	const w1, w2 = "witness.example/w1+01020304+AQ==", "witness.example/w2+05060708+Ag=="
	_, err = b.WitnessProgress(ctx, w1)
	mustErr(t, err, store.ErrNotFound)
	mustErr(t, b.AddCosignatures(ctx, store.Cosignatures{Witness: w1, Size: 3, Lines: []byte("— w1 AAAA\n"), Time: t0}), store.ErrNotFound)
	_, err = b.InitLog(ctx, "log.example/self")
	must(t, err)
	must(t, b.Sequence(ctx, chunk(0, "a", "b", "c", "d")))
	const note3 = "log.example/self\n3\nroot3\n\n— log.example/self c2lnMw==\n"
	const note4 = "log.example/self\n4\nroot4\n\n— log.example/self c2lnNA==\n"
	must(t, b.Integrate(ctx, 0, store.Integration{Size: 3, Checkpoint: []byte(note3), Time: t0}))
	must(t, b.Integrate(ctx, 3, store.Integration{Size: 4, Checkpoint: []byte(note4), Time: t0}))

	for _, bad := range []string{"", "— w1 AAAA", "w1 AAAA\n", "— w1 AAAA\nnot a signature\n", "— \n"} {
		if err := b.AddCosignatures(ctx, store.Cosignatures{Witness: w1, Size: 3, Lines: []byte(bad), Time: t0}); err == nil {
			t.Errorf("AddCosignatures accepted lines %q", bad)
		}
	}
	noteAt := func(size uint64) string {
		t.Helper()
		cps, err := b.Checkpoints(ctx, size-1, 1)
		must(t, err)
		if len(cps) != 1 || cps[0].Size != size {
			t.Fatalf("Checkpoints(%d, 1) = %+v", size-1, cps)
		}
		return string(cps[0].Note)
	}
	must(t, b.AddCosignatures(ctx, store.Cosignatures{Witness: w1, Size: 4, Lines: []byte("— w1 AAAA\n"), Time: t0}))
	must(t, b.AddCosignatures(ctx, store.Cosignatures{Witness: w1, Size: 4, Lines: []byte("— w1 AAAA\n"), Time: t0})) // again: not repeated
	must(t, b.AddCosignatures(ctx, store.Cosignatures{Witness: w2, Size: 4, Lines: []byte("— w2 BBBB\n— w2 CCCC\n"), Time: t0.Add(time.Second)}))
	if got, want := noteAt(4), note4+"— w1 AAAA\n— w2 BBBB\n— w2 CCCC\n"; got != want {
		t.Fatalf("note 4 = %q, want %q", got, want)
	}
	if got := noteAt(3); got != note3 {
		t.Fatalf("note 3 changed to %q", got)
	}
	p, err := b.WitnessProgress(ctx, w2)
	must(t, err)
	if p.Witness != w2 || p.Size != 4 || !p.Time.Equal(t0.Add(time.Second)) {
		t.Fatalf("WitnessProgress(w2) = %+v", p)
	}
	// Progress never moves back, though older checkpoints still get their
	// cosignatures.
	must(t, b.AddCosignatures(ctx, store.Cosignatures{Witness: w1, Size: 3, Lines: []byte("— w1 DDDD\n"), Time: t0.Add(time.Hour)}))
	if got, want := noteAt(3), note3+"— w1 DDDD\n"; got != want {
		t.Fatalf("note 3 = %q, want %q", got, want)
	}
	if p, err := b.WitnessProgress(ctx, w1); err != nil || p.Size != 4 {
		t.Fatalf("WitnessProgress(w1) = %+v, %v; want size 4", p, err)
	}
	// The log state's latest checkpoint carries the cosignatures too.
	st, err := b.LogState(ctx)
	must(t, err)
	if got, want := string(st.Checkpoint), noteAt(4); got != want {
		t.Fatalf("log state checkpoint = %q, want %q", got, want)
	}
}
