package witness

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store"
)

// Store keeps a witness's state: per log, the latest checkpoint it
// cosigned.
type Store interface {
	// WitnessLog returns the record for origin, or an error wrapping
	// store.ErrNotFound if the witness never cosigned for it.
	WitnessLog(ctx context.Context, origin string) (store.WitnessLog, error)
	// SetWitnessLog replaces the record for w.Origin with w if the record
	// still has size from (no record counts as 0), atomically, and fails
	// with an error wrapping store.ErrConflict otherwise.
	SetWitnessLog(ctx context.Context, from uint64, w store.WitnessLog) error
}

// Config configures a Witness.
type Config struct {
	// Name is the witness's key name, a schema-less URL such as
	// "witness.example/w1". Its cosignatures carry it.
	Name string
	// Logs are the logs the witness follows, each with the key its
	// checkpoints must be signed with.
	Logs []Log
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// A Log is a log a witness follows.
type Log struct {
	// Origin is the log's origin line; empty means Verifier.Name(). It
	// must equal Verifier.Name(): custos names a log's key after the log.
	Origin string
	// Verifier checks the log's checkpoint signatures (from the log's
	// note verifier key, see note.NewVerifier).
	Verifier note.Verifier
}

// Errors AddCheckpoint returns, and the HTTP status the handler answers
// each with.
var (
	// ErrUnknownLog: the checkpoint's origin is not a log the witness
	// follows (404).
	ErrUnknownLog = errors.New("witness: unknown log")
	// ErrUnverified: the checkpoint carries no valid signature from the
	// log's key (403).
	ErrUnverified = errors.New("witness: checkpoint not signed by the log's key")
	// ErrOldSize: the old size is larger than the checkpoint's size (400).
	ErrOldSize = errors.New("witness: old size is larger than the checkpoint size")
	// ErrConflict: the old size is not the size of the latest checkpoint
	// the witness cosigned, or the checkpoint has that size but another
	// root hash (409). It is a *ConflictError.
	ErrConflict = errors.New("witness: checkpoint conflicts with the latest cosigned checkpoint")
	// ErrProof: the consistency proof does not verify (422).
	ErrProof = errors.New("witness: consistency proof does not verify")
	// ErrNoCheckpoint: the witness holds no checkpoint for the log.
	ErrNoCheckpoint = errors.New("witness: no cosigned checkpoint for this log")
)

// A ConflictError reports a request the witness refused because it does
// not start from the latest checkpoint the witness cosigned, of size Size.
// It matches ErrConflict.
type ConflictError struct {
	Size   uint64 // the size of the latest cosigned checkpoint
	Reason string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("witness: conflict with the cosigned checkpoint of size %d: %s", e.Size, e.Reason)
}

// Unwrap returns ErrConflict.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// Witness cosigns checkpoints of the logs it follows. It is safe for
// concurrent use.
type Witness struct {
	cfg    Config
	st     Store
	key    crypto.Signer
	vkey   string
	self   note.Verifier
	logs   map[string]note.Verifier
	logger *slog.Logger
}

// New returns a witness that keeps its state in st and cosigns with key,
// which must be Ed25519. A witness with no logs cosigns nothing but can
// still hand out the checkpoints it holds (Latest).
func New(st Store, key crypto.Signer, cfg Config) (*Witness, error) {
	if st == nil {
		return nil, errors.New("witness: nil store")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// NewCosigner checks the name and that the key is Ed25519.
	if _, err := auditlog.NewCosigner(cfg.Name, key, cfg.Now); err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	pub := key.Public().(ed25519.PublicKey)
	w := &Witness{
		cfg:    cfg,
		st:     st,
		key:    key,
		vkey:   auditlog.CosignatureVerifierKey(cfg.Name, pub),
		logs:   make(map[string]note.Verifier, len(cfg.Logs)),
		logger: cfg.Logger,
	}
	var err error
	if w.self, err = auditlog.NewCosignatureVerifier(w.vkey); err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	for _, l := range cfg.Logs {
		if l.Verifier == nil {
			return nil, errors.New("witness: a log has no verifier")
		}
		if l.Origin == "" {
			l.Origin = l.Verifier.Name()
		}
		if l.Origin != l.Verifier.Name() {
			return nil, fmt.Errorf("witness: log %q: its key is named %q; a log's key must carry its origin", l.Origin, l.Verifier.Name())
		}
		if _, dup := w.logs[l.Origin]; dup {
			return nil, fmt.Errorf("witness: log %q given twice", l.Origin)
		}
		w.logs[l.Origin] = l.Verifier
	}
	return w, nil
}

// VerifierKey returns the witness's cosignature verifier key: what a log's
// operator configures the log with, and what an auditor checks the
// witness's cosignatures with.
func (w *Witness) VerifierKey() string { return w.vkey }

// Name returns the witness's key name.
func (w *Witness) Name() string { return w.cfg.Name }

// AddCheckpoint carries out a c2sp.org/tlog-witness add-checkpoint request
// and returns the cosignature lines for the response. The new checkpoint
// is stored before it returns.
//
// The checkpoint must come from a log the witness follows (else
// ErrUnknownLog), carry a valid signature from the log's key (else
// ErrUnverified; signatures from other keys are ignored), and be no
// smaller than the old size (else ErrOldSize). The old size must be the
// size of the latest checkpoint the witness cosigned for the log, 0 if
// none; a checkpoint of that same size must have the same root hash (else
// a *ConflictError). The proof must show that the new tree extends the one
// the witness holds (else ErrProof). A malformed request matches
// ErrMalformed. Checking the old size and storing the new checkpoint is
// one atomic step: of two requests racing from the same state, one gets a
// *ConflictError.
func (w *Witness) AddCheckpoint(ctx context.Context, r Request) ([]byte, error) {
	split := bytes.LastIndex(r.Checkpoint, []byte("\n\n"))
	if split < 0 {
		return nil, fmt.Errorf("%w: checkpoint is not a signed note", ErrMalformed)
	}
	text := r.Checkpoint[:split+1]
	cp, err := auditlog.ParseCheckpoint(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	v, ok := w.logs[cp.Origin]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownLog, cp.Origin)
	}
	_, n, err := auditlog.OpenCheckpoint(r.Checkpoint, v)
	switch {
	case errors.Is(err, auditlog.ErrMalformed):
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrUnverified, err)
	}
	if r.OldSize > cp.Size {
		return nil, fmt.Errorf("%w: old size %d, checkpoint size %d", ErrOldSize, r.OldSize, cp.Size)
	}

	prev, err := w.st.WitnessLog(ctx, cp.Origin)
	switch {
	case errors.Is(err, store.ErrNotFound):
		empty := auditlog.EmptyRoot()
		prev = store.WitnessLog{Origin: cp.Origin, Size: 0, Root: empty[:]}
	case err != nil:
		return nil, fmt.Errorf("witness: reading state of %q: %w", cp.Origin, err)
	case len(prev.Root) != auditlog.HashSize:
		return nil, fmt.Errorf("witness: state of %q holds a %d-byte root hash", cp.Origin, len(prev.Root))
	}
	if r.OldSize != prev.Size {
		return nil, &ConflictError{Size: prev.Size, Reason: fmt.Sprintf("old size %d is not the size of the latest cosigned checkpoint", r.OldSize)}
	}
	held := auditlog.Checkpoint{Origin: cp.Origin, Size: prev.Size, Hash: auditlog.Hash(prev.Root)}
	if cp.Size == prev.Size && cp.Hash != held.Hash {
		w.logger.Warn("witness: refused a checkpoint that forks the log: same size, another root hash",
			"origin", cp.Origin, "size", cp.Size, "held_root", held.Hash.String(), "checkpoint", string(r.Checkpoint))
		return nil, &ConflictError{Size: prev.Size, Reason: "same size as the cosigned checkpoint but another root hash"}
	}
	if err := auditlog.VerifyConsistency(held, cp, r.Proof); err != nil {
		w.logger.Warn("witness: refused a checkpoint whose consistency proof does not verify",
			"origin", cp.Origin, "old", prev.Size, "size", cp.Size, "err", err, "checkpoint", string(r.Checkpoint))
		return nil, fmt.Errorf("%w: %w", ErrProof, err)
	}

	// A cosignature's time never goes back for a log: it states that, as
	// of that time, this was the largest tree the witness had seen.
	at := w.cfg.Now().UTC().Truncate(time.Second)
	if at.Before(prev.Time) {
		at = prev.Time
	}
	cosigner, err := auditlog.NewCosigner(w.cfg.Name, w.key, func() time.Time { return at })
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	signed, err := note.Sign(&note.Note{Text: string(text)}, cosigner)
	if err != nil {
		return nil, fmt.Errorf("witness: cosigning: %w", err)
	}
	line := signed[len(text)+1:]
	// What the witness keeps and hands out: the checkpoint with the log's
	// verified signature and its own, nothing unverified.
	keep := bytes.Clone(signed[:len(text)+1])
	for _, s := range n.Sigs {
		keep = fmt.Appendf(keep, "— %s %s\n", s.Name, s.Base64)
	}
	keep = append(keep, line...)
	next := store.WitnessLog{Origin: cp.Origin, Size: cp.Size, Root: bytes.Clone(cp.Hash[:]), Checkpoint: keep, Time: at}
	if err := w.st.SetWitnessLog(ctx, prev.Size, next); err != nil {
		if !errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("witness: storing checkpoint of %q: %w", cp.Origin, err)
		}
		now, rerr := w.st.WitnessLog(ctx, cp.Origin)
		if rerr != nil {
			return nil, fmt.Errorf("witness: reading state of %q: %w", cp.Origin, rerr)
		}
		return nil, &ConflictError{Size: now.Size, Reason: "another request advanced the log first"}
	}
	w.logger.Info("witness: cosigned", "origin", cp.Origin, "old", prev.Size, "size", cp.Size)
	return line, nil
}

// Latest returns the latest checkpoint the witness cosigned for the log
// named origin, with the log's signature and the witness's cosignature: a
// signed note to give to an auditor, who checks it with the log's and the
// witness's verifier keys. It fails with ErrNoCheckpoint if the witness
// holds none, and checks its own cosignature on what it read.
func (w *Witness) Latest(ctx context.Context, origin string) ([]byte, error) {
	rec, err := w.st.WitnessLog(ctx, origin)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %q", ErrNoCheckpoint, origin)
	}
	if err != nil {
		return nil, fmt.Errorf("witness: reading state of %q: %w", origin, err)
	}
	n, err := note.Open(rec.Checkpoint, note.VerifierList(w.self))
	if err != nil {
		return nil, fmt.Errorf("witness: stored checkpoint of %q does not carry a valid cosignature of this witness: %w", origin, err)
	}
	cp, err := auditlog.ParseCheckpoint([]byte(n.Text))
	if err != nil || cp.Origin != origin || cp.Size != rec.Size {
		return nil, fmt.Errorf("witness: stored checkpoint of %q does not match its record", origin)
	}
	return rec.Checkpoint, nil
}

// Handler serves the c2sp.org/tlog-witness submission API:
// POST /add-checkpoint.
func (w *Witness) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", w.serveAddCheckpoint)
	return mux
}

// ContentTypeSize is the content type of a 409 response's body: the size
// of the latest cosigned checkpoint.
const ContentTypeSize = "text/x.tlog.size"

func (w *Witness) serveAddCheckpoint(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxRequestSize))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			http.Error(rw, fmt.Sprintf("request body larger than %d bytes", MaxRequestSize), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(rw, "cannot read the request body", http.StatusBadRequest)
		return
	}
	req, err := ParseRequest(body)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	line, err := w.AddCheckpoint(r.Context(), req)
	if ce, ok := errors.AsType[*ConflictError](err); ok {
		rw.Header().Set("Content-Type", ContentTypeSize)
		rw.Header().Set("X-Content-Type-Options", "nosniff")
		rw.WriteHeader(http.StatusConflict)
		io.WriteString(rw, strconv.FormatUint(ce.Size, 10)+"\n")
		return
	}
	switch {
	case err == nil:
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.Write(line)
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrOldSize):
		http.Error(rw, err.Error(), http.StatusBadRequest)
	case errors.Is(err, ErrUnknownLog):
		http.Error(rw, err.Error(), http.StatusNotFound)
	case errors.Is(err, ErrUnverified):
		http.Error(rw, err.Error(), http.StatusForbidden)
	case errors.Is(err, ErrProof):
		http.Error(rw, err.Error(), http.StatusUnprocessableEntity)
	default:
		w.logger.Error("witness: add-checkpoint", "err", err)
		http.Error(rw, "internal error", http.StatusInternalServerError)
	}
}
