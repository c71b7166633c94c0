// Package auditverify checks a custos audit log at rest, from its database
// alone: it re-derives the Merkle tree from the stored entries, compares it
// with the stored tiles and with every checkpoint it is given or finds
// (the log's own history, a witness's, a file), checks every checkpoint's
// signature and cosignatures, and reports the first bad ranges with the
// times around them. It is what `custos audit verify` runs.
//
// It works on a damaged database: it never opens the log for writing (so a
// rolled-back log, which the log itself refuses to run on, is still
// examined), and a missing, altered or reordered entry, a cut tail or a
// fork is a Problem in the Report, not an error. Memory stays flat as the
// log grows: entries are streamed in order, one tile per tree level and one
// page of checkpoints are held at a time.
package auditverify

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store"
)

// Store is what Verify reads. The SQLite store implements it.
type Store interface {
	LogState(ctx context.Context) (store.LogState, error)
	Chunks(ctx context.Context, from, to uint64) ([]store.Chunk, error)
	store.TilePartReader
	// Checkpoints returns up to limit stored checkpoints with size >
	// after, in order of size.
	Checkpoints(ctx context.Context, after uint64, limit int) ([]store.LogCheckpoint, error)
	NoteKey(ctx context.Context, name string) (store.NoteKey, error)
}

// DefaultMaxProblems bounds the problems a Report lists.
const DefaultMaxProblems = 100

// Where the log key came from (Report.LogKeySource).
const (
	KeySourceGiven = "given"
	KeySourceStore = "store"
)

// Options configures Verify. The zero value checks the log against its own
// history with the key its database holds.
type Options struct {
	// LogKey is the log's note verifier key (name+hash+key). Empty means
	// the note key stored in the database for the log's origin, which
	// proves nothing against someone who could rewrite the database.
	LogKey string
	// WitnessKeys are cosignature/v1 verifier keys of witnesses whose
	// cosignatures are checked. Cosignatures by other keys are listed in
	// the report, not checked.
	WitnessKeys []string
	// Checkpoints are signed checkpoints from outside the database: a
	// witness's, a file an auditor kept, the data directory's checkpoint
	// file. CheckpointNames, if set, names them in the report (parallel
	// to Checkpoints); missing names are "external checkpoint N".
	Checkpoints     [][]byte
	CheckpointNames []string
	// MaxProblems bounds Report.Problems; 0 means DefaultMaxProblems.
	MaxProblems int
}

// Errors. Verify reports damage to the log in its Report; it returns an
// error only when it cannot verify at all.
var (
	// ErrNoLog: the database holds no audit log.
	ErrNoLog = errors.New("auditverify: the database holds no audit log")
	// ErrInvalidOptions: a key in Options cannot be parsed, or the log
	// key is for another log.
	ErrInvalidOptions = errors.New("auditverify: invalid options")
)

// ownPage is how many stored checkpoints are read at once.
const ownPage = 1024

// Verify checks the audit log in st. See the package documentation and
// docs/spec/audit-log.md for what it checks. It returns an error only if
// the store cannot be read or opts are invalid (matching ErrInvalidOptions);
// everything wrong with the log itself is in the Report.
func Verify(ctx context.Context, st Store, opts Options) (*Report, error) {
	start := time.Now()
	if opts.MaxProblems <= 0 {
		opts.MaxProblems = DefaultMaxProblems
	}
	state, err := st.LogState(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNoLog
	}
	if err != nil {
		return nil, fmt.Errorf("auditverify: read log state: %w", err)
	}
	r := &run{
		ctx: ctx, st: st, opts: opts,
		rep: &Report{
			Origin: state.Origin, Size: state.Integrated, Sequenced: state.Sequenced, Pruned: state.Pruned,
			Cosigned: map[string]uint64{}, Problems: []Problem{},
		},
		size:        state.Integrated,
		lastByKind:  map[Kind]int{},
		singles:     map[auditlog.Hash]single{},
		unknownSeen: map[string]bool{},
	}
	for i := range r.tiles {
		r.tiles[i].index = -1
	}
	if err := r.keys(); err != nil {
		return nil, err
	}
	r.loadFixed(state)
	if err := r.stream(state); err != nil {
		return nil, err
	}
	if err := r.finish(); err != nil {
		return nil, err
	}
	rep := r.rep
	slices.SortStableFunc(rep.Problems, func(a, b Problem) int { return cmp.Compare(a.FirstIndex, b.FirstIndex) })
	rep.Intact = len(rep.Problems) == 0 && rep.ProblemsOmitted == 0
	if len(rep.Cosigned) == 0 {
		rep.Cosigned = nil
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// run is one verification.
type run struct {
	ctx  context.Context
	st   Store
	opts Options
	rep  *Report

	logV note.Verifier
	wits []note.Verifier

	size uint64 // the tree size checked

	// The tree built from the checked leaf hashes: the roots of its
	// perfect subtrees, left to right, heights strictly decreasing.
	stack  []subtree
	leaves uint64 // leaves appended
	broken bool   // a leaf hash is lost: no roots from here on

	// One tile per level, the one the stream is in.
	tiles   [maxLevels]tileView
	badTile badTiles

	// Checkpoints.
	fixed     []cpItem // external ones and the state's, by size
	fixedNext int
	own       []store.LogCheckpoint // the current page of stored ones
	ownNext   int
	ownAfter  uint64 // size of the last stored checkpoint read
	ownDone   bool
	ownBad    *cpItem // last own checkpoint with a bad signature, for merging
	beyond    []cpItem
	lastMatch struct { // the last checkpoint whose root matched
		any, ext         uint64
		anyTime, extTime time.Time
	}
	rootProblem bool // a checkpoint mismatch was reported

	// Entry checks.
	goodTime    time.Time // time of the last good entry
	awaitUntil  []int     // problems waiting for the next good entry's time
	lastByKind  map[Kind]int
	run         []mismatch // consecutive leaf mismatches
	runFrom     time.Time
	singles     map[auditlog.Hash]single // lone mismatches, by tile hash
	unknownSeen map[string]bool
	// Cosigners of the checkpoint open last verified.
	lastCosigners []string
	// Time of the last good entry in the tree (at size r.size).
	endTime time.Time
}

type subtree struct {
	hash   auditlog.Hash
	height uint8
}

type mismatch struct {
	index      uint64
	leaf, tile auditlog.Hash
}

// single is a lone mismatched entry, remembered so that a later one with
// the crossed hashes makes the pair a reorder.
type single struct {
	index   uint64
	leaf    auditlog.Hash
	problem int
}

const maxSingles = 4096
const maxRun = 4096

// cpItem is a checkpoint to compare with the tree.
type cpItem struct {
	source string
	own    bool
	ext    int // index in rep.External, or -1
	size   uint64
	hash   auditlog.Hash
	time   time.Time
	ok     bool // signature verified
}

// keys sets up the log and witness verifiers.
func (r *run) keys() error {
	origin := r.rep.Origin
	if r.opts.LogKey != "" {
		v, err := note.NewVerifier(r.opts.LogKey)
		if err != nil {
			return fmt.Errorf("%w: log key: %v", ErrInvalidOptions, err)
		}
		if v.Name() != origin {
			return fmt.Errorf("%w: the log key is for %q, this log is %q", ErrInvalidOptions, v.Name(), origin)
		}
		r.logV, r.rep.LogKey, r.rep.LogKeySource = v, r.opts.LogKey, KeySourceGiven
	} else {
		k, err := r.st.NoteKey(r.ctx, origin)
		if err != nil {
			return fmt.Errorf("auditverify: the log's note key: %w", err)
		}
		vkey, err := note.NewEd25519VerifierKey(origin, ed25519.PublicKey(k.Public))
		if err != nil {
			return fmt.Errorf("auditverify: the log's note key: %w", err)
		}
		v, err := note.NewVerifier(vkey)
		if err != nil {
			return fmt.Errorf("auditverify: the log's note key: %w", err)
		}
		r.logV, r.rep.LogKey, r.rep.LogKeySource = v, vkey, KeySourceStore
	}
	for _, k := range r.opts.WitnessKeys {
		v, err := auditlog.NewCosignatureVerifier(k)
		if err != nil {
			return fmt.Errorf("%w: witness key %q: %v", ErrInvalidOptions, k, err)
		}
		r.wits = append(r.wits, v)
	}
	return nil
}

// loadFixed opens the external checkpoints and the state's latest one.
func (r *run) loadFixed(state store.LogState) {
	for i, signed := range r.opts.Checkpoints {
		name := fmt.Sprintf("external checkpoint %d", i+1)
		if i < len(r.opts.CheckpointNames) && r.opts.CheckpointNames[i] != "" {
			name = r.opts.CheckpointNames[i]
		}
		it := r.open(signed, name, false)
		it.ext = len(r.rep.External)
		res := External{Source: name, Size: it.size, Time: it.time, Result: "bad-signature"}
		res.Cosigners = r.lastCosigners
		r.rep.External = append(r.rep.External, res)
		r.rep.CheckpointsExternal++
		if it.ok {
			r.fixed = append(r.fixed, it)
		}
	}
	if state.Checkpoint != nil {
		it := r.open(state.Checkpoint, "log state", true)
		it.ext = -1
		r.rep.CheckpointsOwn++
		if it.ok {
			r.fixed = append(r.fixed, it)
		}
	} else if state.Integrated > 0 {
		r.add(Problem{Kind: KindBadSignature, FirstIndex: 0, LastIndex: state.Integrated - 1, Checkpoint: "log state",
			Detail: "the log state has a tree but no checkpoint"}, false)
	}
	slices.SortStableFunc(r.fixed, func(a, b cpItem) int { return cmp.Compare(a.size, b.size) })
}

// open verifies a signed checkpoint: the log's signature, and every
// cosignature from a known witness. Failures are problems; the returned
// item has ok set only if the log's signature verified.
func (r *run) open(signed []byte, source string, own bool) cpItem {
	it := cpItem{source: source, own: own, ext: -1}
	r.lastCosigners = nil
	cp, n, err := auditlog.OpenCheckpoint(signed, r.logV)
	if err != nil {
		detail := err.Error()
		if _, uerr := note.Open(signed, note.VerifierList()); uerr != nil {
			if ue, ok := errors.AsType[*note.UnverifiedNoteError](uerr); ok {
				var by []string
				forged := false
				for _, s := range ue.Note.UnverifiedSigs {
					by = append(by, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
					forged = forged || s.Name == r.logV.Name() && s.Hash == r.logV.KeyHash()
				}
				detail = fmt.Sprintf("not signed by the log key %s+%08x (signed by %s)", r.logV.Name(), r.logV.KeyHash(), strings.Join(by, ", "))
				if forged {
					detail = fmt.Sprintf("the signature of the log key %s+%08x does not verify", r.logV.Name(), r.logV.KeyHash())
				}
				if c, perr := auditlog.ParseCheckpoint([]byte(ue.Note.Text)); perr == nil {
					it.size = c.Size
				}
			}
		}
		r.badSig(it, detail)
		return it
	}
	it.size, it.hash, it.ok = cp.Size, cp.Hash, true
	for _, s := range n.UnverifiedSigs {
		w := r.witness(s)
		if w == nil {
			id := fmt.Sprintf("%s+%08x", s.Name, s.Hash)
			if !r.unknownSeen[id] {
				r.unknownSeen[id] = true
				r.rep.UnknownCosigners = append(r.rep.UnknownCosigners, id)
			}
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(s.Base64)
		if err != nil || len(raw) < 4 || !w.Verify([]byte(n.Text), raw[4:]) {
			r.badSig(it, fmt.Sprintf("invalid cosignature from witness %s+%08x", s.Name, s.Hash))
			continue
		}
		r.rep.Cosigned[s.Name]++
		r.lastCosigners = append(r.lastCosigners, s.Name)
		if t, err := auditlog.CosignatureTime(s); err == nil && (it.time.IsZero() || t.Before(it.time)) {
			it.time = t
		}
	}
	return it
}

func (r *run) witness(s note.Signature) note.Verifier {
	for _, w := range r.wits {
		if w.Name() == s.Name && w.KeyHash() == s.Hash {
			return w
		}
	}
	return nil
}

// badSig records a checkpoint with a bad signature. Consecutive own
// checkpoints with bad signatures make one problem.
func (r *run) badSig(it cpItem, detail string) {
	last := uint64(0)
	if it.size > 0 {
		last = it.size - 1
	}
	p := Problem{Kind: KindBadSignature, FirstIndex: last, LastIndex: last, Until: it.time, Checkpoint: it.source,
		Detail: fmt.Sprintf("checkpoint of size %d: %s", it.size, detail)}
	if it.own && it.source == "own" {
		if r.ownBad != nil {
			if i, ok := r.lastByKind[KindBadSignature]; ok && r.rep.Problems[i].Checkpoint == "own" && r.rep.Problems[i].LastIndex <= last {
				r.rep.Problems[i].LastIndex = last
				r.rep.Problems[i].Detail = fmt.Sprintf("own checkpoints up to size %d: %s", it.size, detail)
				r.ownBad = &it
				return
			}
		}
		r.ownBad = &it
	}
	r.add(p, false)
}

// add records a problem; await means its Until is the next good entry's
// time.
func (r *run) add(p Problem, await bool) int {
	if len(r.rep.Problems) >= r.opts.MaxProblems {
		r.rep.ProblemsOmitted++
		return -1
	}
	r.rep.Problems = append(r.rep.Problems, p)
	i := len(r.rep.Problems) - 1
	r.lastByKind[p.Kind] = i
	if await {
		r.awaitUntil = append(r.awaitUntil, i)
	}
	return i
}

// extend grows the last problem of kind k to index last if it ends right
// before first; it reports whether it did.
func (r *run) extend(k Kind, first, last uint64) bool {
	i, ok := r.lastByKind[k]
	if !ok || r.rep.Problems[i].LastIndex+1 != first {
		return false
	}
	r.rep.Problems[i].LastIndex = last
	if !slices.Contains(r.awaitUntil, i) {
		r.awaitUntil = append(r.awaitUntil, i)
	}
	return true
}

// good records a good entry's time: the Until of the problems before it.
func (r *run) good(t time.Time) {
	r.goodTime = t
	for _, i := range r.awaitUntil {
		r.rep.Problems[i].Until = t
	}
	r.awaitUntil = r.awaitUntil[:0]
}

// stream reads every entry in order and checks it.
func (r *run) stream(state store.LogState) error {
	pruned := min(state.Pruned, r.size)
	// Below the pruning point only the tiles are left.
	for i := uint64(0); i < pruned; i++ {
		if err := r.fromTile(i); err != nil {
			return err
		}
	}
	r.rep.HashesFromTiles = pruned
	if err := r.checkpointsAt(pruned); err != nil {
		return err
	}
	entries := startEntries(r.ctx, r.st, pruned, state.Sequenced)
	if err := entries.each(r.consume); err != nil {
		return err
	}
	r.closeRun()
	return nil
}

// fromTile takes leaf i's hash from the level-0 tile.
func (r *run) fromTile(i uint64) error {
	h, ok, err := r.tileNode(0, i)
	if err != nil {
		return err
	}
	if !ok {
		r.lose(i)
		return nil
	}
	return r.appendLeaf(i, h)
}

// lose records that leaf i's hash is unknown: no root can be computed
// from here on.
func (r *run) lose(i uint64) {
	if !r.broken {
		r.broken = true
	}
	r.leaves = i + 1
}

// consume checks one batch from the producer.
func (r *run) consume(b *batch) error {
	switch b.kind {
	case batchGap, batchDamaged:
		return r.gap(b)
	}
	for k := range b.n {
		i := b.from + uint64(k)
		r.rep.EntriesChecked++
		t := b.times[k]
		if b.errs[k] != nil {
			if !r.extend(KindNotCanonical, i, i) {
				r.add(Problem{Kind: KindNotCanonical, FirstIndex: i, LastIndex: i, From: r.goodTime,
					Detail: fmt.Sprintf("entry %d: %v", i, b.errs[k])}, true)
			}
		} else {
			if r.rep.FirstTime.IsZero() {
				r.rep.FirstTime = t
			}
			r.rep.LastTime = t
		}
		if i >= r.size {
			// Sequenced but not yet in the tree: checked for form only.
			if b.errs[k] == nil {
				r.good(t)
			}
			continue
		}
		leaf := b.leaves[k]
		tileLeaf, ok, err := r.tileNode(0, i)
		if err != nil {
			return err
		}
		if ok && tileLeaf != leaf {
			r.mismatch(i, leaf, tileLeaf, t)
			leaf = tileLeaf
		} else {
			r.closeRun()
			if b.errs[k] == nil {
				r.good(t)
			}
		}
		if err := r.appendLeaf(i, leaf); err != nil {
			return err
		}
	}
	return nil
}

// gap handles entries that are not stored, or whose chunk is damaged:
// their leaf hashes come from the tiles.
func (r *run) gap(b *batch) error {
	r.closeRun()
	from, to := b.from, b.to
	kind, detail := KindMissing, ""
	if b.kind == batchDamaged {
		kind, detail = KindAltered, fmt.Sprintf("the chunk holding entries %d–%d cannot be split into entries: %v", from, to-1, b.err)
	} else {
		// Pruning may have moved on while we read: a gap below the
		// current pruning point is pruned, not missing.
		st, err := r.st.LogState(r.ctx)
		if err != nil {
			return err
		}
		if st.Pruned >= to {
			kind = ""
		}
	}
	// A gap or damaged chunk read in two segments is one problem.
	if kind != "" && !r.extend(kind, from, to-1) {
		if kind == KindMissing {
			detail = "the entries are not stored (a gap in the chunks), above the pruning point"
		}
		r.add(Problem{Kind: kind, FirstIndex: from, LastIndex: to - 1, From: r.goodTime, Detail: detail}, true)
	}
	for i := from; i < to && i < r.size; i++ {
		if err := r.fromTile(i); err != nil {
			return err
		}
		r.rep.HashesFromTiles++
	}
	return nil
}

// mismatch records leaf i whose entry does not hash to the stored tile.
func (r *run) mismatch(i uint64, leaf, tile auditlog.Hash, t time.Time) {
	if len(r.run) > 0 && r.run[len(r.run)-1].index+1 != i {
		r.closeRun()
	}
	if len(r.run) == 0 {
		r.runFrom = r.goodTime
	}
	if len(r.run) < maxRun {
		r.run = append(r.run, mismatch{index: i, leaf: leaf, tile: tile})
	} else {
		r.run[len(r.run)-1] = mismatch{index: i, leaf: leaf, tile: tile}
	}
	_ = t
}

// closeRun classifies the current run of consecutive mismatches.
func (r *run) closeRun() {
	if len(r.run) == 0 {
		return
	}
	first, last := r.run[0].index, r.run[len(r.run)-1].index
	defer func() { r.run = r.run[:0] }()
	if len(r.run) == 1 {
		m := r.run[0]
		// The crossed partner of an earlier lone mismatch: a swap.
		if s, ok := r.singles[m.leaf]; ok && s.leaf == m.tile && s.problem >= 0 {
			p := &r.rep.Problems[s.problem]
			p.Kind, p.LastIndex = KindReordered, m.index
			p.Detail = fmt.Sprintf("entries %d and %d are swapped: each is where the tree has the other", s.index, m.index)
			r.awaitUntil = append(r.awaitUntil, s.problem)
			delete(r.singles, m.leaf)
			return
		}
		pi := r.add(Problem{Kind: KindAltered, FirstIndex: first, LastIndex: last, From: r.runFrom,
			Detail: fmt.Sprintf("entry %d does not hash to the stored tree", first)}, true)
		if len(r.singles) < maxSingles {
			r.singles[m.tile] = single{index: m.index, leaf: m.leaf, problem: pi}
		}
		return
	}
	if len(r.run) < maxRun && samePermutation(r.run) {
		r.add(Problem{Kind: KindReordered, FirstIndex: first, LastIndex: last, From: r.runFrom,
			Detail: fmt.Sprintf("entries %d–%d are the logged entries in another order", first, last)}, true)
		return
	}
	r.add(Problem{Kind: KindAltered, FirstIndex: first, LastIndex: last, From: r.runFrom,
		Detail: fmt.Sprintf("entries %d–%d do not hash to the stored tree", first, last)}, true)
}

// samePermutation reports whether the run's entries are its tile leaves in
// another order.
func samePermutation(run []mismatch) bool {
	a := make([]auditlog.Hash, len(run))
	b := make([]auditlog.Hash, len(run))
	for i, m := range run {
		a[i], b[i] = m.leaf, m.tile
	}
	less := func(x, y auditlog.Hash) int { return bytes.Compare(x[:], y[:]) }
	slices.SortFunc(a, less)
	slices.SortFunc(b, less)
	return slices.Equal(a, b)
}

// appendLeaf adds leaf i to the tree, compares every new interior node
// with the stored tiles, and compares the root with the checkpoints of
// size i+1.
func (r *run) appendLeaf(i uint64, h auditlog.Hash) error {
	if r.broken {
		r.leaves = i + 1
		return r.checkpointsAt(i + 1)
	}
	height, idx := uint8(0), i
	for len(r.stack) > 0 && r.stack[len(r.stack)-1].height == height {
		h = auditlog.NodeHash(r.stack[len(r.stack)-1].hash, h)
		r.stack = r.stack[:len(r.stack)-1]
		height++
		idx >>= 1
		if err := r.checkNode(height, idx, h); err != nil {
			return err
		}
	}
	r.stack = append(r.stack, subtree{hash: h, height: height})
	r.leaves = i + 1
	return r.checkpointsAt(i + 1)
}

// root returns the root of the tree built so far.
func (r *run) root() auditlog.Hash {
	if len(r.stack) == 0 {
		return auditlog.EmptyRoot()
	}
	root := r.stack[len(r.stack)-1].hash
	for j := len(r.stack) - 2; j >= 0; j-- {
		root = auditlog.NodeHash(r.stack[j].hash, root)
	}
	return root
}

// checkpointsAt compares the tree, now of size n, with every checkpoint of
// size n.
func (r *run) checkpointsAt(n uint64) error {
	if n == r.size {
		r.endTime = r.goodTime
	}
	for r.fixedNext < len(r.fixed) && r.fixed[r.fixedNext].size <= n {
		it := r.fixed[r.fixedNext]
		r.fixedNext++
		if it.size > r.size {
			r.beyond = append(r.beyond, it)
			continue
		}
		r.compare(it)
	}
	for {
		if r.ownNext == len(r.own) {
			if r.ownDone || r.ownAfter >= n {
				return nil
			}
			page, err := r.st.Checkpoints(r.ctx, r.ownAfter, ownPage)
			if err != nil {
				return fmt.Errorf("auditverify: read checkpoints: %w", err)
			}
			r.own, r.ownNext = page, 0
			if len(page) == 0 {
				r.ownDone = true
				return nil
			}
			r.ownAfter = page[len(page)-1].Size
		}
		c := r.own[r.ownNext]
		if c.Size > n {
			return nil
		}
		r.ownNext++
		r.rep.CheckpointsOwn++
		it := r.open(c.Note, "own", true)
		if it.ok && it.size != c.Size {
			r.badSig(it, fmt.Sprintf("stored as the checkpoint of size %d", c.Size))
			continue
		}
		if it.time.IsZero() {
			it.time = c.Time
		}
		if it.ok {
			r.ownBad = nil
			r.compare(it)
		}
	}
}

// compare checks a verified checkpoint against the tree at its size.
func (r *run) compare(it cpItem) {
	if r.broken {
		r.rep.CheckpointsUnchecked++
		r.result(it, "unchecked")
		return
	}
	if r.root() == it.hash {
		r.result(it, "match")
		r.lastMatch.any, r.lastMatch.anyTime = it.size, r.goodTime
		if !it.own {
			r.lastMatch.ext, r.lastMatch.extTime = it.size, r.goodTime
		}
		return
	}
	r.result(it, "mismatch")
	r.rep.CheckpointsMismatched++
	if r.rootProblem {
		return
	}
	r.rootProblem = true
	last := it.size - 1
	if it.size == 0 {
		last = 0
	}
	if it.own {
		// The stored entries and tiles agree with each other but not
		// with what the log itself signed: rewritten without the key.
		r.add(Problem{Kind: KindAltered, FirstIndex: r.lastMatch.any, LastIndex: last, From: r.lastMatch.anyTime, Checkpoint: it.source,
			Detail: fmt.Sprintf("the stored tree differs from the log's own checkpoint of size %d (last matching checkpoint: size %d): entries and tiles were rewritten", it.size, r.lastMatch.any)}, true)
		return
	}
	r.add(Problem{Kind: KindFork, FirstIndex: r.lastMatch.ext, LastIndex: last, From: r.lastMatch.extTime, Until: it.time, Checkpoint: it.source,
		Detail: fmt.Sprintf("the stored log is self-consistent but differs from %s at size %d (last matching external checkpoint: size %d): the log was rewritten and re-signed after entry %d",
			it.source, it.size, r.lastMatch.ext, int64(r.lastMatch.ext)-1)}, false)
}

func (r *run) result(it cpItem, res string) {
	if it.ext >= 0 {
		r.rep.External[it.ext].Result = res
	}
}

// finish handles checkpoints beyond the stored tree.
func (r *run) finish() error {
	// The fixed checkpoints the stream never reached.
	for ; r.fixedNext < len(r.fixed); r.fixedNext++ {
		r.beyond = append(r.beyond, r.fixed[r.fixedNext])
	}
	// Stored checkpoints beyond the tree: the state was rolled back.
	var ownBeyond []cpItem
	for !r.ownDone {
		for ; r.ownNext < len(r.own); r.ownNext++ {
			c := r.own[r.ownNext]
			r.rep.CheckpointsOwn++
			it := r.open(c.Note, "own", true)
			if it.ok {
				if it.time.IsZero() {
					it.time = c.Time
				}
				ownBeyond = append(ownBeyond, it)
			}
		}
		page, err := r.st.Checkpoints(r.ctx, r.ownAfter, ownPage)
		if err != nil {
			return fmt.Errorf("auditverify: read checkpoints: %w", err)
		}
		r.own, r.ownNext = page, 0
		if len(page) == 0 {
			r.ownDone = true
		} else {
			r.ownAfter = page[len(page)-1].Size
		}
	}
	if len(ownBeyond) > 0 {
		// A log that kept growing while we read is not truncated.
		st, err := r.st.LogState(r.ctx)
		if err != nil {
			return err
		}
		for _, it := range ownBeyond {
			if it.size > st.Integrated {
				r.beyond = append(r.beyond, it)
			}
		}
	}
	var worst *cpItem
	for i := range r.beyond {
		it := &r.beyond[i]
		r.result(*it, "beyond")
		if worst == nil || it.size > worst.size || it.size == worst.size && !it.own && worst.own {
			worst = it
		}
	}
	if worst == nil {
		return nil
	}
	r.add(Problem{Kind: KindTruncated, FirstIndex: r.size, LastIndex: worst.size - 1, From: r.endTime, Until: worst.time, Checkpoint: worst.source,
		Detail: fmt.Sprintf("%s covers %d entries but the stored tree has %d: entries %d–%d were cut off or the database was restored from an older copy",
			worst.source, worst.size, r.size, r.size, worst.size-1)}, false)
	return nil
}
