package tlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store"
)

// Store is what the log needs from storage.
type Store interface {
	// InitLog creates the log named origin unless one exists, and returns
	// the log's state.
	InitLog(ctx context.Context, origin string) (store.LogState, error)
	// LogState returns the log's state.
	LogState(ctx context.Context) (store.LogState, error)
	// AppendChunk durably stores count entries as the log's next ones and
	// returns the index of the first. Indexes are assigned in the store,
	// so other writers (the CLI beside a server, grants that append their
	// events in their own transaction, other nodes) never conflict.
	AppendChunk(ctx context.Context, count uint64, data []byte) (uint64, error)
	// Chunks returns the stored chunks holding entries in [from, to).
	Chunks(ctx context.Context, from, to uint64) ([]store.Chunk, error)
	// Integrate stores one integration step if the tree has size from, and
	// fails with store.ErrConflict otherwise.
	Integrate(ctx context.Context, from uint64, in store.Integration) error
	// PutTiles stores tile parts ahead of the integration that covers
	// them, keeping the widest version of each.
	PutTiles(ctx context.Context, parts []store.TilePart) error
	TileReader
}

// Defaults.
const (
	// DefaultCheckpointInterval bounds how often checkpoints are signed;
	// an acknowledged entry is in a signed checkpoint within about this
	// long.
	DefaultCheckpointInterval = 500 * time.Millisecond
	// DefaultMaxPending bounds the entries waiting for a commit; Append
	// blocks while that many are queued.
	DefaultMaxPending = 1 << 16
	// MaxEntrySize is the largest entry: tlog-tiles entry bundles give each
	// entry a two-byte length.
	MaxEntrySize = 1<<16 - 1
)

// Config configures a Log.
type Config struct {
	// Origin names the log in its checkpoints. It must equal the note
	// key's name. A log keeps the origin it was created with.
	Origin string
	// Key signs checkpoints.
	Key note.Signer
	// Verifier checks checkpoints signed by Key (used at start to check
	// the stored and published checkpoints).
	Verifier note.Verifier
	// CheckpointFile, if set, is a file outside the database where the
	// latest checkpoint is kept. At start the stored tree must match it;
	// a database restored from an older copy is refused.
	CheckpointFile string
	// CheckpointInterval; 0 means DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// MaxPending; 0 means DefaultMaxPending.
	MaxPending int
	// OnCheckpoint, if set, is called (from the integrator goroutine, so
	// it must not block for long) after each new checkpoint is durable.
	OnCheckpoint func(signed []byte, cp auditlog.Checkpoint)
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Origin == "" || c.Key == nil || c.Verifier == nil {
		return c, errors.New("tlog: Config needs Origin, Key and Verifier")
	}
	if c.Key.Name() != c.Origin || c.Verifier.Name() != c.Origin {
		return c, fmt.Errorf("tlog: key name %q does not match origin %q", c.Key.Name(), c.Origin)
	}
	if c.Key.KeyHash() != c.Verifier.KeyHash() {
		return c, errors.New("tlog: verifier is not the key's")
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.CheckpointInterval < 0 {
		return c, errors.New("tlog: CheckpointInterval must be positive")
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Errors.
var (
	// ErrClosed is returned by Append after Close.
	ErrClosed = errors.New("tlog: log closed")
	// ErrEntryTooLarge is returned for entries over MaxEntrySize bytes.
	ErrEntryTooLarge = errors.New("tlog: entry too large")
	// ErrRolledBack means the stored log is behind, or differs from, a
	// checkpoint the log already published: the database was restored
	// from an older copy or altered. The log refuses to run on it.
	ErrRolledBack = errors.New("tlog: stored log does not match a published checkpoint")
)

// Log is an append-only Merkle log. It is safe for concurrent use.
type Log struct {
	cfg Config
	st  Store

	// Appends waiting for the next commit.
	mu      sync.Mutex
	cond    *sync.Cond // signalled when pending shrinks or the log closes
	pending *batch
	closed  bool
	kick    chan struct{}
	// spare holds the buffers of committed batches, for the next ones:
	// growing a fresh buffer for every batch costs more than the appends.
	spare [][]byte

	// Leaf hashes of batches this process committed, by first index,
	// awaiting integration. Entries others appended are read from the
	// store.
	imu   sync.Mutex
	known map[uint64][]auditlog.Hash
	ikick chan struct{}

	// Owned by the integrator goroutine.
	rng   *compact.Range
	edge  map[tileKey]*tile // tiles on the tree's right edge, by level
	dirty map[tileKey]*tile

	latest atomic.Pointer[published]

	// tileCache shares full upper-level tiles between proofs.
	tileCache tileCache

	stop     chan struct{}
	seqDone  chan struct{}
	intDone  chan struct{}
	closeErr error
}

type tileKey struct {
	level uint8
	index uint64
}

// published is the latest checkpoint the log signed and stored.
type published struct {
	signed []byte
	cp     auditlog.Checkpoint
}

// batch is the appends that share one commit.
type batch struct {
	buf    []byte // entries, each with its two-byte length: the chunk
	n      int    // entries in buf
	hashes []auditlog.Hash
	first  uint64
	err    error
	done   chan struct{}
}

func newBatch() *batch { return &batch{done: make(chan struct{})} }

var factory = &compact.RangeFactory{Hash: func(l, r []byte) []byte {
	h := auditlog.NodeHash(auditlog.Hash(l), auditlog.Hash(r))
	return h[:]
}}

// Open opens the log in st, creating it if needed, checks the stored tree
// against the stored and published checkpoints, integrates any entries a
// crash left unintegrated, and starts the sequencer and integrator.
func Open(ctx context.Context, st Store, cfg Config) (*Log, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	state, err := st.InitLog(ctx, cfg.Origin)
	if err != nil {
		return nil, fmt.Errorf("tlog: open: %w", err)
	}
	if state.Origin != cfg.Origin {
		return nil, fmt.Errorf("tlog: the stored log is %q, not %q", state.Origin, cfg.Origin)
	}
	l := &Log{
		cfg:     cfg,
		st:      st,
		pending: newBatch(),
		known:   make(map[uint64][]auditlog.Hash),
		kick:    make(chan struct{}, 1),
		ikick:   make(chan struct{}, 1),
		stop:    make(chan struct{}),
		seqDone: make(chan struct{}),
		intDone: make(chan struct{}),
	}
	l.cond = sync.NewCond(&l.mu)
	if err := l.loadTree(ctx, state); err != nil {
		return nil, err
	}
	if err := l.checkPublished(state); err != nil {
		return nil, err
	}
	if state.Sequenced > state.Integrated {
		if err := l.integrate(ctx); err != nil {
			return nil, err
		}
	}
	go l.sequencer()
	go l.integrator()
	return l, nil
}

// Close stops accepting appends, commits and integrates what was queued,
// and stops the log's goroutines.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.closeErr
	}
	l.closed = true
	l.cond.Broadcast()
	l.mu.Unlock()
	close(l.stop)
	<-l.seqDone
	<-l.intDone
	return l.closeErr
}

// Verifier returns the verifier of the log's checkpoint key.
func (l *Log) Verifier() note.Verifier { return l.cfg.Verifier }

// Origin returns the log's origin.
func (l *Log) Origin() string { return l.cfg.Origin }

// Checkpoint returns the latest signed checkpoint, or nil before the first.
func (l *Log) Checkpoint() ([]byte, auditlog.Checkpoint) {
	p := l.latest.Load()
	if p == nil {
		return nil, auditlog.Checkpoint{Origin: l.cfg.Origin, Hash: auditlog.EmptyRoot()}
	}
	return p.signed, p.cp
}

// Append adds entry to the log and returns its index once it is durable.
// Once queued, an append is waited for even if ctx ends, so that an error
// means the store did not commit the entry. (One case stays open: a commit
// that fails with an I/O error after SQLite wrote it to the WAL can come
// back when the database is next opened.)
func (l *Log) Append(ctx context.Context, entry []byte) (uint64, error) {
	if len(entry) > MaxEntrySize {
		return 0, fmt.Errorf("%w: %d bytes", ErrEntryTooLarge, len(entry))
	}
	h := auditlog.LeafHash(entry)
	b, err := l.reserve(ctx, 1)
	if err != nil {
		return 0, err
	}
	pos := b.n
	b.buf, _ = auditlog.AppendEntryBundle(b.buf, entry) // size checked above
	b.n++
	b.hashes = append(b.hashes, h)
	l.mu.Unlock()
	return l.await(b, pos)
}

// reserve waits until the pending batch has room for n entries and returns
// it with l.mu held, or an error with l.mu released.
func (l *Log) reserve(ctx context.Context, n int) (*batch, error) {
	l.mu.Lock()
	for l.pending.n > 0 && l.pending.n+n > l.cfg.MaxPending && !l.closed {
		l.cond.Wait()
	}
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	return l.pending, nil
}

// await kicks the sequencer and returns the index of the entry at pos in b
// once b is committed.
func (l *Log) await(b *batch, pos int) (uint64, error) {
	select {
	case l.kick <- struct{}{}:
	default:
	}
	<-b.done
	if b.err != nil {
		return 0, b.err
	}
	return b.first + uint64(pos), nil
}

// AppendAll adds entries, in order, in one commit, and returns the index of
// the first once they are durable: all of them are stored, or none. At most
// MaxPending entries at once.
func (l *Log) AppendAll(ctx context.Context, entries [][]byte) (uint64, error) {
	if len(entries) == 0 {
		return 0, errors.New("tlog: AppendAll of no entries")
	}
	if len(entries) > l.cfg.MaxPending {
		return 0, fmt.Errorf("tlog: AppendAll of %d entries, over MaxPending (%d)", len(entries), l.cfg.MaxPending)
	}
	hashes := make([]auditlog.Hash, len(entries))
	for i, e := range entries {
		if len(e) > MaxEntrySize {
			return 0, fmt.Errorf("%w: entry %d is %d bytes", ErrEntryTooLarge, i, len(e))
		}
		hashes[i] = auditlog.LeafHash(e)
	}
	b, err := l.reserve(ctx, len(entries))
	if err != nil {
		return 0, err
	}
	pos := b.n
	for _, e := range entries {
		b.buf, _ = auditlog.AppendEntryBundle(b.buf, e) // sizes checked above
	}
	b.n += len(entries)
	b.hashes = append(b.hashes, hashes...)
	l.mu.Unlock()
	return l.await(b, pos)
}

// commitDepth is how many batches may be committing at once: a store can
// write a large batch's bytes while it commits the last one's.
const commitDepth = 2

// overlapBytes is the smallest batch that starts committing while another
// is: a smaller one would only add a commit (and its sync) behind the
// other, where waiting for it lets the batch grow and share one.
const overlapBytes = 16 << 10

// sequencer commits pending appends, one batch at a time, or up to
// commitDepth when they are large.
func (l *Log) sequencer() {
	defer close(l.seqDone)
	finished := make(chan struct{}, commitDepth)
	inflight := 0
	var committing sync.WaitGroup
	defer committing.Wait()
	for {
		select {
		case <-l.kick:
		case <-finished:
			inflight--
		case <-l.stop:
		}
		l.mu.Lock()
		b := l.pending
		n := b.n // b is ours only if it was swapped out here
		if inflight > 0 && (inflight == commitDepth || len(b.buf) < overlapBytes) {
			// Wait for a commit to end; appends arriving meanwhile
			// join this batch.
			l.mu.Unlock()
			<-finished
			inflight--
			select {
			case l.kick <- struct{}{}:
			default:
			}
			continue
		}
		if n > 0 {
			l.pending = newBatch()
			if k := len(l.spare); k > 0 {
				l.pending.buf, l.spare = l.spare[k-1][:0], l.spare[:k-1]
			}
			l.pending.hashes = make([]auditlog.Hash, 0, n)
			l.cond.Broadcast()
		}
		closed := l.closed
		l.mu.Unlock()
		if n > 0 {
			inflight++
			committing.Go(func() {
				l.commit(b)
				l.mu.Lock()
				l.spare = append(l.spare, b.buf) // the store keeps no reference to it
				l.mu.Unlock()
				finished <- struct{}{}
			})
		}
		if closed {
			l.mu.Lock()
			rest := l.pending.n
			l.mu.Unlock()
			if rest == 0 {
				return
			}
		}
	}
}

// commit stores batch b as the next entries and releases its appends.
func (l *Log) commit(b *batch) {
	defer close(b.done)
	// The store must finish with the batch even if every appender's
	// context ends: they are all waiting for the outcome.
	first, err := l.st.AppendChunk(context.Background(), uint64(b.n), b.buf)
	if err != nil {
		b.err = fmt.Errorf("tlog: append: %w", err)
		return
	}
	b.first = first
	l.imu.Lock()
	l.known[first] = b.hashes
	l.imu.Unlock()
	select {
	case l.ikick <- struct{}{}:
	default:
	}
}
