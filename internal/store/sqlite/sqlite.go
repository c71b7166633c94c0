// Package sqlite is custos's embedded storage backend: one SQLite database
// file in the data directory, in WAL mode, with synchronous=FULL so that a
// write custos has acknowledged survives a crash or power loss.
//
// All writes go through one writer goroutine that commits them in groups: the
// writes waiting when a commit starts share its transaction and its fsync,
// each inside its own savepoint so that one failing write does not undo the
// others. Reads use a separate pool of read-only connections.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrations embed.FS

// FileName is the database file's name inside the data directory.
const FileName = "custos.db"

// maxBatch bounds how many writes share one commit.
const maxBatch = 512

// pageSize is the database's page size. 4 KiB pages keep whole rows of the
// index-organised (WITHOUT ROWID) tables on one page; smaller pages push them
// to overflow pages.
const pageSize = 4096

// readerCachePages is each read connection's page cache, in pages. SQLite
// allocates a cache's first 20 pages in one block and recycles them; pages
// past those are allocated one by one, and the driver's allocator maps and
// unmaps memory for each. A reader's cache is emptied whenever another
// connection has committed since its last read, which under steady writes
// is nearly every read, so a larger cache would mostly be allocated and
// freed again, costing two system calls per page.
const readerCachePages = 20

// Store is the SQLite backend. It is safe for concurrent use.
type Store struct {
	wdb   *sql.DB // one connection, used only by the writer goroutine
	rdb   *sql.DB // read-only pool
	ckdb  *sql.DB // one connection, used only by the checkpointer
	path  string
	seg   segments
	tiles *tileFile

	ckDone chan struct{}

	// prepared holds the writer connection's statements for the hottest
	// writes, prepared once at Open; read-only afterwards.
	prepared map[string]*sql.Stmt
	// reads caches the read pool's prepared statements, by query.
	reads sync.Map

	writes chan *writeReq
	// lazy is whether the writer connection is set not to sync its
	// commits; owned by the writer goroutine.
	lazy bool
	// restartWAL asks the writer to finish a checkpoint between two of its
	// transactions, so that the next one starts the WAL again.
	restartWAL chan struct{}
	// mu guards sending on writes against Close: once closing is set, no
	// write is queued, so the writer's final drain sees every queued write.
	mu      sync.RWMutex
	closing bool
	done    chan struct{}
	closed  chan struct{}
}

type writeReq struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *sql.Tx) error
	errc chan error
	// lazy writes need not be durable when they return: what they store
	// can be derived again after a crash. A commit of lazy writes alone
	// is not synced; the next synced commit makes it durable.
	lazy bool
}

// Open opens (creating if needed) the database in dir and applies any
// pending migrations. The directory is created with mode 0700.
func Open(ctx context.Context, dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: create data directory: %w", err)
	}
	return OpenFile(ctx, filepath.Join(dir, FileName))
}

// OpenFile opens the database at path.
func OpenFile(ctx context.Context, path string) (*Store, error) {
	// The driver applies these in alphabetical order after busy_timeout,
	// so journal_mode (which fixes the page size of a new database) is
	// set below, once page_size has been.
	pragmas := []string{
		"busy_timeout(10000)",
		fmt.Sprintf("page_size(%d)", pageSize),
		// Commits never checkpoint: the checkpointer goroutine does, on
		// its own connection, so no commit waits for pages to be copied
		// into the database.
		"wal_autocheckpoint(0)",
		"synchronous(FULL)",
		"foreign_keys(ON)",
	}
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()

	wdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	if err := wdb.PingContext(ctx); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if _, err := wdb.ExecContext(ctx, "PRAGMA journal_mode = WAL"); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlite: WAL mode: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlite: restrict permissions: %w", err)
	}
	if err := migrate(ctx, wdb); err != nil {
		wdb.Close()
		return nil, err
	}

	rq := url.Values{}
	for _, p := range []string{pragmas[0], "query_only(ON)", fmt.Sprintf("cache_size(%d)", readerCachePages)} {
		rq.Add("_pragma", p)
	}
	rdb, err := sql.Open("sqlite", "file:"+path+"?"+rq.Encode())
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlite: open readers: %w", err)
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)

	prepared := make(map[string]*sql.Stmt)
	for _, q := range hotWrites {
		st, err := wdb.PrepareContext(ctx, q)
		if err != nil {
			wdb.Close()
			rdb.Close()
			return nil, fmt.Errorf("sqlite: prepare: %w", err)
		}
		prepared[q] = st
	}
	s := &Store{
		path:       path,
		seg:        segments{dir: path + SegmentsSuffix},
		tiles:      newTileFile(path + TilesSuffix),
		ckDone:     make(chan struct{}),
		prepared:   prepared,
		wdb:        wdb,
		rdb:        rdb,
		writes:     make(chan *writeReq, maxBatch),
		restartWAL: make(chan struct{}, 1),
		done:       make(chan struct{}),
		closed:     make(chan struct{}),
	}
	ck, err := sql.Open("sqlite", dsn)
	if err != nil {
		wdb.Close()
		rdb.Close()
		return nil, fmt.Errorf("sqlite: open checkpointer: %w", err)
	}
	ck.SetMaxOpenConns(1)
	s.ckdb = ck
	go s.writer()
	go s.checkpointer()
	return s, nil
}

// Checkpointing.
const (
	// checkpointEvery is how often the checkpointer copies committed
	// pages from the WAL into the database, without blocking writers.
	checkpointEvery = 250 * time.Millisecond
	// walRestartSize is the WAL size past which the WAL is started again
	// from its beginning, so that it cannot grow without bound.
	walRestartSize = 64 << 20
	// walRestartLag is how many frames a checkpoint may leave behind for
	// the writer to copy when it restarts the WAL.
	walRestartLag = 512
	// walRestartPasses bounds the extra checkpoint passes made to get
	// there.
	walRestartPasses = 4
)

// checkpointer copies the WAL into the database in the background.
//
// SQLite starts the WAL again from its beginning when a write transaction
// begins and every frame in it has been copied into the database; under a
// steady stream of commits a checkpoint running beside the writer never
// catches up. So once the WAL is large, the checkpointer copies until only a
// few frames are left and asks the writer to copy those between two of its
// transactions. Nothing waits on a lock: the writer's pause is the copy of
// those few frames (SQLite's own RESTART checkpoint would wait for the writer
// through its busy handler, which sleeps for tens of milliseconds at a time).
func (s *Store) checkpointer() {
	defer close(s.ckDone)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	ctx := context.Background()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		frames, done, err := checkpoint(ctx, s.ckdb)
		// A few passes at most: readers holding older snapshots, or a
		// busy writer, can keep a pass from catching up, and the WAL
		// must be restarted all the same.
		for range walRestartPasses {
			if err != nil || frames*pageSize <= walRestartSize || frames-done <= walRestartLag {
				break
			}
			frames, done, err = checkpoint(ctx, s.ckdb)
		}
		if err == nil && frames*pageSize > walRestartSize {
			select {
			case s.restartWAL <- struct{}{}:
			default:
			}
		}
	}
}

// checkpoint runs a passive checkpoint on db and returns the frames in the
// WAL and how many of them are in the database. A busy result just means
// the next round does the rest.
func checkpoint(ctx context.Context, db *sql.DB) (frames, done int, err error) {
	var busy int
	err = db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done)
	return frames, done, err
}

func migrate(ctx context.Context, db *sql.DB) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys, goose.WithDisableGlobalRegistry(true), goose.WithGoMigrations(splitTiles, logFiles))
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	// A database a newer custos migrated has tables and rules this one
	// does not know of: writing to it would bypass them.
	have, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	srcs := p.ListSources()
	if known := srcs[len(srcs)-1].Version; have > known {
		return fmt.Errorf("sqlite: the database is at schema version %d, newer than this custos knows (%d): run the custos that migrated it, or a newer one", have, known)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

// Close stops the writer after the writes already queued and closes the
// database.
func (s *Store) Close() error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.done)
	}
	s.mu.Unlock()
	<-s.closed
	<-s.ckDone
	s.seg.close()
	s.reads.Range(func(_, st any) bool {
		st.(*sql.Stmt).Close()
		return true
	})
	return errors.Join(s.tiles.close(), s.ckdb.Close(), s.rdb.Close(), s.wdb.Close())
}

// hotWrites are the statements every token grant or audit append runs.
var hotWrites = append(qInsertReceipts[:], qInsertRefresh, qRecordFamily, qSpendRefresh, qSequence, qInsertChunk, qLogSize, qAppendSeq, qInsertExtent, qPutTilePart)

// exec runs query in tx, through its prepared statement if it has one.
func (s *Store) exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st := s.prepared[query]; st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

// readStmt returns the read pool's prepared statement for query, preparing
// it on first use; database/sql prepares it on each connection as needed.
// Every query custos reads with is a constant, so the cache is bounded.
func (s *Store) readStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.reads.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.rdb.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.reads.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// queryRow runs a single-row read through a prepared statement. A point
// read is short, so it runs without ctx's cancellation, which would cost
// the driver a goroutine per query.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = context.WithoutCancel(ctx)
	st, err := s.readStmt(ctx, query)
	if err != nil {
		return s.rdb.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// query runs a read through a prepared statement.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.readStmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// queryAll runs a read through a prepared statement and scans every row
// with scan.
func queryAll[T any](ctx context.Context, s *Store, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ErrClosed is returned by writes submitted after Close.
var ErrClosed = errors.New("sqlite: store closed")

// write runs fn in a write transaction and returns once that transaction is
// durable (or failed). fn may run in a transaction shared with other writes,
// isolated by a savepoint: its changes are kept only if it returns nil.
//
// fn gets ctx's values without its cancellation: once a write has started,
// ending ctx must not interrupt the transaction it shares with others (and
// a cancellable context costs the driver a goroutine per statement).
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	errc, err := s.queue(ctx, &writeReq{ctx: ctx, fn: fn})
	if err != nil {
		return err
	}
	// Once queued, the write is waited for even if ctx ends: the caller
	// must learn whether it was committed.
	return <-errc
}

// writeLazy is write for a lazy write (see writeReq): it returns once the
// transaction is committed, but not necessarily synced.
func (s *Store) writeLazy(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	errc, err := s.queue(ctx, &writeReq{ctx: ctx, fn: fn, lazy: true})
	if err != nil {
		return err
	}
	return <-errc
}

// queue queues a write and returns the channel its outcome will be sent
// on. Writes are committed in the order they were queued.
func (s *Store) queue(ctx context.Context, req *writeReq) (<-chan error, error) {
	req.errc = make(chan error, 1)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closing {
		return nil, ErrClosed
	}
	select {
	case s.writes <- req:
		return req.errc, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Store) writer() {
	defer close(s.closed)
	batch := make([]*writeReq, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case <-s.restartWAL:
			checkpoint(context.Background(), s.wdb)
			continue
		case r := <-s.writes:
			batch = append(batch, r)
		case <-s.done:
			// Drain what was queued before Close.
			for {
				select {
				case r := <-s.writes:
					s.commit([]*writeReq{r})
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-s.writes:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commit(batch)
	}
}

// commit runs a batch of writes in one transaction. Writes rarely fail, so
// it first runs them all without savepoints; if one fails, the transaction
// is rolled back and the batch runs again with a savepoint per write, so
// that the failing write is undone alone.
func (s *Store) commit(batch []*writeReq) {
	lazy := true
	for _, r := range batch {
		lazy = lazy && r.lazy
	}
	if err := s.setSync(lazy); err != nil {
		s.fail(batch, err)
		return
	}
	errs := make([]error, len(batch))
	if s.commitOptimistic(batch, errs) {
		return
	}
	s.commitIsolated(batch, errs)
}

// setSync sets whether the writer's commits are synced: off (synchronous
// NORMAL, which in WAL mode syncs the WAL only when checkpointing) for a
// batch of lazy writes, on (FULL) otherwise.
func (s *Store) setSync(lazy bool) error {
	if lazy == s.lazy {
		return nil
	}
	q := "PRAGMA synchronous = FULL"
	if lazy {
		q = "PRAGMA synchronous = NORMAL"
	}
	if _, err := s.wdb.ExecContext(context.Background(), q); err != nil {
		return fmt.Errorf("sqlite: %s: %w", q, err)
	}
	s.lazy = lazy
	return nil
}

func (s *Store) fail(batch []*writeReq, err error) {
	for _, r := range batch {
		r.errc <- err
	}
}

// commitOptimistic runs the batch in one transaction without savepoints.
// It reports false, having rolled back, if a write failed.
func (s *Store) commitOptimistic(batch []*writeReq, errs []error) bool {
	ctx := context.Background()
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		s.fail(batch, fmt.Errorf("sqlite: begin: %w", err))
		return true
	}
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if err := runWrite(r, tx); err != nil {
			tx.Rollback()
			clear(errs)
			return false
		}
	}
	if err := tx.Commit(); err != nil {
		s.fail(batch, fmt.Errorf("sqlite: commit: %w", err))
		return true
	}
	for i, r := range batch {
		r.errc <- errs[i]
	}
	return true
}

// commitIsolated runs the batch in one transaction, one savepoint each.
func (s *Store) commitIsolated(batch []*writeReq, errs []error) {
	ctx := context.Background()
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		s.fail(batch, fmt.Errorf("sqlite: begin: %w", err))
		return
	}
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if len(batch) == 1 {
			errs[i] = runWrite(r, tx)
			if errs[i] != nil {
				tx.Rollback()
				r.errc <- errs[i]
				return
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT w"); err != nil {
			tx.Rollback()
			s.fail(batch, fmt.Errorf("sqlite: savepoint: %w", err))
			return
		}
		errs[i] = runWrite(r, tx)
		if errs[i] != nil {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO w"); err != nil {
				tx.Rollback()
				s.fail(batch, fmt.Errorf("sqlite: rollback to savepoint: %w", err))
				return
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE w"); err != nil {
			tx.Rollback()
			s.fail(batch, fmt.Errorf("sqlite: release savepoint: %w", err))
			return
		}
	}
	if err := tx.Commit(); err != nil {
		s.fail(batch, fmt.Errorf("sqlite: commit: %w", err))
		return
	}
	for i, r := range batch {
		r.errc <- errs[i]
	}
}

// runWrite calls fn, turning a panic into an error so one bad write cannot
// take the writer goroutine down with the rest of the batch.
func runWrite(r *writeReq, tx *sql.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sqlite: write panicked: %v", p)
		}
	}()
	return r.fn(context.WithoutCancel(r.ctx), tx)
}

// isUnique reports whether err is a UNIQUE or PRIMARY KEY violation.
func isUnique(err error) bool {
	se, ok := errors.AsType[*sqlite.Error](err)
	if !ok {
		return false
	}
	c := se.Code()
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}
