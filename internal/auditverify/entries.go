package auditverify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/tlog"
)

// Reading is split into segments of segmentSize entries, read, hashed and
// parsed by readers goroutines side by side (segment k by reader k mod
// readers), and checked in order by the caller. Reading the store is most
// of the work, so two readers keep two cores busy. Each reader holds at
// most batchesPerReader batches: memory does not grow with the log.
const (
	batchSize        = 4096
	segmentSize      = 16 * batchSize
	readers          = 2
	batchesPerReader = 4
)

type batchKind int

const (
	batchEntries batchKind = iota
	batchGap               // entries [from, to) are not stored
	batchDamaged           // the chunk holding [from, to) is damaged
	batchEnd               // the segment is done
	batchError             // reading failed: err
)

// batch is consecutive entries, hashed and parsed, or a gap, or the end of
// a segment.
type batch struct {
	kind     batchKind
	from, to uint64
	err      error
	n        int
	leaves   [batchSize]auditlog.Hash
	times    [batchSize]time.Time
	errs     [batchSize]error
}

// reader is one reading goroutine's output and its batches.
type reader struct {
	out  chan *batch
	free chan *batch
}

// entryStream reads entries [from, to) with readers goroutines.
type entryStream struct {
	readers [readers]reader
	nseg    uint64
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func startEntries(ctx context.Context, st tlog.ChunkReader, from, to uint64) *entryStream {
	ctx, cancel := context.WithCancel(ctx)
	s := &entryStream{cancel: cancel}
	if to > from {
		s.nseg = (to - from + segmentSize - 1) / segmentSize
	}
	for w := range s.readers {
		rd := reader{out: make(chan *batch, batchesPerReader), free: make(chan *batch, batchesPerReader)}
		for range batchesPerReader {
			rd.free <- &batch{}
		}
		s.readers[w] = rd
		s.wg.Go(func() {
			for k := uint64(w); k < s.nseg; k += readers {
				a := from + k*segmentSize
				b := min(to, a+segmentSize)
				if err := readSegment(ctx, st, a, b, rd); err != nil {
					if ctx.Err() == nil {
						send(ctx, rd, batch{kind: batchError, err: err})
					}
					return
				}
				if !send(ctx, rd, batch{kind: batchEnd}) {
					return
				}
			}
		})
	}
	return s
}

// each calls fn for every batch, in order. fn must not keep the batch.
func (s *entryStream) each(fn func(*batch) error) error {
	defer s.stop()
	for k := range s.nseg {
		rd := s.readers[k%readers]
		for {
			b := <-rd.out
			switch b.kind {
			case batchEnd:
			case batchError:
				return b.err
			default:
				if err := fn(b); err != nil {
					return err
				}
			}
			kind := b.kind
			rd.free <- b
			if kind == batchEnd {
				break
			}
		}
	}
	return nil
}

// stop ends the readers and waits for them. Every send and receive of
// theirs also waits for the context, so none is left blocked.
func (s *entryStream) stop() {
	s.cancel()
	s.wg.Wait()
}

// send sends a batch built from proto; it reports false if ctx ended.
func send(ctx context.Context, rd reader, proto batch) bool {
	var b *batch
	select {
	case b = <-rd.free:
	case <-ctx.Done():
		return false
	}
	b.kind, b.from, b.to, b.err, b.n = proto.kind, proto.from, proto.to, proto.err, 0
	select {
	case rd.out <- b:
		return true
	case <-ctx.Done():
		return false
	}
}

// readSegment reads entries [from, to) in order with tlog.ReadEntries,
// hashes and parses each, and sends them in batches. Gaps and damaged
// chunks are sent as batches of their own, and reading goes on after them.
func readSegment(ctx context.Context, st tlog.ChunkReader, from, to uint64, rd reader) error {
	var b *batch
	flush := func() error {
		if b != nil && b.n > 0 {
			select {
			case rd.out <- b:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		b = nil
		return nil
	}
	next := from
	for next < to {
		err := tlog.ReadEntries(ctx, st, next, to, func(i uint64, entry []byte) error {
			if b == nil {
				select {
				case b = <-rd.free:
				case <-ctx.Done():
					return ctx.Err()
				}
				b.kind, b.from, b.n, b.err = batchEntries, i, 0, nil
			}
			k := b.n
			b.leaves[k] = auditlog.LeafHash(entry)
			e, err := event.Parse(entry)
			b.times[k], b.errs[k] = e.Time, err
			b.n++
			next = i + 1
			if b.n == batchSize {
				return flush()
			}
			return nil
		})
		if err == nil {
			break
		}
		if ferr := flush(); ferr != nil {
			return ferr
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		kind, end, why := batchGap, uint64(0), error(nil)
		if gap, ok := errors.AsType[*tlog.MissingError](err); ok && gap.From == next {
			end = gap.To
		} else {
			// ReadEntries splits a whole chunk before handing out any of
			// its entries: the damaged chunk is the one holding next.
			cs, cerr := st.Chunks(ctx, next, next+1)
			if cerr != nil {
				return fmt.Errorf("auditverify: read entries: %w", cerr)
			}
			if len(cs) == 0 || cs[0].First > next || splitOK(cs[0].Data, cs[0].Count) {
				return fmt.Errorf("auditverify: read entries at %d: %w", next, err)
			}
			kind, why = batchDamaged, err
			end = max(next+1, min(cs[0].First+cs[0].Count, to))
			// A damaged count must not hide the chunks after it.
			if more, cerr := st.Chunks(ctx, next, end); cerr == nil {
				for _, c := range more {
					if c.First > next && c.First < end {
						end = c.First
					}
				}
			}
		}
		if !send(ctx, rd, batch{kind: kind, from: next, to: end, err: why}) {
			return ctx.Err()
		}
		next = end
	}
	return flush()
}

// splitOK reports whether a chunk splits into exactly count entries, each
// with its two-byte length (store.Chunk).
func splitOK(b []byte, count uint64) bool {
	var n uint64
	for len(b) > 0 {
		if len(b) < 2 {
			return false
		}
		l := int(b[0])<<8 | int(b[1])
		if len(b) < 2+l {
			return false
		}
		b = b[2+l:]
		n++
	}
	return n == count
}
