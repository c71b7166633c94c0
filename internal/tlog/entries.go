package tlog

import (
	"context"
	"fmt"

	"github.com/custos-dev/custos/internal/store"
)

// ChunkReader reads stored entries.
type ChunkReader interface {
	Chunks(ctx context.Context, from, to uint64) ([]store.Chunk, error)
}

// MissingError reports entries that should be stored but are not: pruned,
// or deleted behind the log's back.
type MissingError struct {
	From, To uint64 // the missing range, [From, To)
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("tlog: entries [%d, %d) are not stored", e.From, e.To)
}

// ReadEntries returns entries [from, to) from st, in order, calling fn for
// each. The entry slice is only valid during the call. A gap in the stored
// entries is a *MissingError; a damaged chunk is an error naming it.
func ReadEntries(ctx context.Context, st ChunkReader, from, to uint64, fn func(index uint64, entry []byte) error) error {
	const step = 1 << 14 // entries per store read, to bound memory
	next := from
	for next < to {
		end := min(to, next+step)
		chunks, err := st.Chunks(ctx, next, end)
		if err != nil {
			return err
		}
		for _, c := range chunks {
			if c.First > next {
				return &MissingError{From: next, To: min(c.First, to)}
			}
			entries, err := parseChunk(c)
			if err != nil {
				return err
			}
			for i := next - c.First; i < c.Count && next < end; i++ {
				if err := fn(next, entries[i]); err != nil {
					return err
				}
				next++
			}
		}
		if next < end {
			return &MissingError{From: next, To: end}
		}
	}
	return nil
}

// parseChunk splits a chunk into its entries.
func parseChunk(c store.Chunk) ([][]byte, error) {
	entries := make([][]byte, 0, c.Count)
	b := c.Data
	for len(b) > 0 {
		if len(b) < 2 {
			break
		}
		n := int(b[0])<<8 | int(b[1])
		if len(b) < 2+n {
			break
		}
		entries = append(entries, b[2:2+n])
		b = b[2+n:]
	}
	if len(b) != 0 || uint64(len(entries)) != c.Count {
		return nil, fmt.Errorf("tlog: chunk at %d is damaged: %d entries and %d stray bytes, want %d entries", c.First, len(entries), len(b), c.Count)
	}
	return entries, nil
}

// Entries returns copies of entries [from, to).
func (l *Log) Entries(ctx context.Context, from, to uint64) ([][]byte, error) {
	var out [][]byte
	err := ReadEntries(ctx, l.st, from, to, func(_ uint64, e []byte) error {
		out = append(out, append([]byte(nil), e...))
		return nil
	})
	return out, err
}
