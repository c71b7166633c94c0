package auditverify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Kind names what is wrong with a range of the log.
type Kind string

// The kinds of problem Verify reports.
const (
	// KindMissing: entries that should be stored (at or above the pruning
	// point, below the stored size) are gone: a gap in the chunks.
	KindMissing Kind = "missing"
	// KindAltered: stored entries do not hash to the stored tree (leaf ≠
	// tile), a chunk cannot be split into entries, or the stored entries
	// and tiles agree with each other but not with the log's own signed
	// checkpoint (rewritten without the log key).
	KindAltered Kind = "altered"
	// KindReordered: entries whose hashes are in the tree, but at each
	// other's places.
	KindReordered Kind = "reordered"
	// KindTruncated: a checkpoint (a witness's, a file, the log's own
	// history) covers entries the stored log no longer has: the tail was
	// cut, or the database was restored from an older copy.
	KindTruncated Kind = "truncated"
	// KindFork: everything stored is self-consistent and signed by the log
	// key, but differs from an external checkpoint: someone with the log
	// key rewrote the log after the last matching external checkpoint.
	KindFork Kind = "fork"
	// KindBadSignature: a checkpoint is not signed by the log key, names
	// another origin, or carries an invalid cosignature from a known
	// witness.
	KindBadSignature Kind = "bad-signature"
	// KindNotCanonical: an entry is not a canonical v1 audit event.
	KindNotCanonical Kind = "not-canonical"
	// KindTileMismatch: a stored tile is missing, malformed, or holds an
	// interior node that is not the hash of its children.
	KindTileMismatch Kind = "tile-mismatch"
)

// A Problem is one bad range of the log. Indexes are entry indexes,
// inclusive. From and Until bracket the range in time: From is the time of
// the last good entry before it, Until the time of the first good entry
// after it, or, where the range ends at a checkpoint the stored entries
// cannot reach (truncated, fork), the time of that checkpoint (its earliest
// known witness cosignature, or the time the log stored it). Either is zero
// when unknown.
type Problem struct {
	Kind       Kind      `json:"kind"`
	FirstIndex uint64    `json:"first_index"`
	LastIndex  uint64    `json:"last_index"`
	From       time.Time `json:"from,omitzero"`
	Until      time.Time `json:"until,omitzero"`
	// Checkpoint names the checkpoint involved, if any: "own" history,
	// "log state", or an external checkpoint's source.
	Checkpoint string `json:"checkpoint,omitempty"`
	Detail     string `json:"detail"`
}

func (p Problem) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: entries %d–%d", p.Kind, p.FirstIndex, p.LastIndex)
	if p.FirstIndex == p.LastIndex {
		b.Reset()
		fmt.Fprintf(&b, "%s: entry %d", p.Kind, p.FirstIndex)
	}
	switch {
	case !p.From.IsZero() && !p.Until.IsZero():
		fmt.Fprintf(&b, ", between %s and %s", fmtTime(p.From), fmtTime(p.Until))
	case !p.From.IsZero():
		fmt.Fprintf(&b, ", after %s", fmtTime(p.From))
	case !p.Until.IsZero():
		fmt.Fprintf(&b, ", before %s", fmtTime(p.Until))
	}
	if p.Checkpoint != "" {
		fmt.Fprintf(&b, " [%s]", p.Checkpoint)
	}
	if p.Detail != "" {
		b.WriteString(": ")
		b.WriteString(p.Detail)
	}
	return b.String()
}

// External is what Verify found for one external checkpoint.
type External struct {
	Source string `json:"source"`
	Size   uint64 `json:"size"`
	// Result is "match", "mismatch", "beyond" (larger than the stored
	// tree), "bad-signature", or "unchecked" (the tree could not be
	// computed that far).
	Result    string    `json:"result"`
	Cosigners []string  `json:"cosigners,omitempty"` // verified witness cosignatures
	Time      time.Time `json:"time,omitzero"`       // earliest verified cosignature
}

// Report is the outcome of Verify.
type Report struct {
	Intact bool   `json:"intact"` // no problems
	Origin string `json:"origin"`
	// Size is the tree size checked: the size of the log's latest
	// checkpoint when verification started.
	Size uint64 `json:"size"`
	// Sequenced is the number of entries stored; entries [Size,
	// Sequenced) await integration and are checked for form only.
	Sequenced uint64 `json:"sequenced"`
	// EntriesChecked counts entries read, hashed and parsed.
	EntriesChecked uint64 `json:"entries_checked"`
	// Pruned is the pruning point: entries [0, Pruned) are not stored, and
	// their leaf hashes were taken from the stored tiles.
	Pruned          uint64 `json:"pruned"`
	HashesFromTiles uint64 `json:"hashes_from_tiles"`
	// FirstTime and LastTime are the times of the first and last entry
	// checked.
	FirstTime time.Time `json:"first_time,omitzero"`
	LastTime  time.Time `json:"last_time,omitzero"`
	// LogKey is the verifier key checkpoints were checked with, and
	// LogKeySource where it came from: "given" (Options.LogKey) or
	// "store" (the database's own note key, which an attacker holding
	// the database could have replaced).
	LogKey       string `json:"log_key"`
	LogKeySource string `json:"log_key_source"`
	// CheckpointsOwn counts the log's own checkpoints checked (its
	// history and the latest in its state); CheckpointsExternal the
	// external ones.
	CheckpointsOwn      uint64     `json:"checkpoints_own"`
	CheckpointsExternal int        `json:"checkpoints_external"`
	External            []External `json:"external,omitempty"`
	// Cosigned counts, per known witness, the checkpoints carrying its
	// valid cosignature.
	Cosigned map[string]uint64 `json:"cosigned,omitempty"`
	// UnknownCosigners lists signers (name+key hash) of checkpoints that
	// are neither the log key nor a given witness key.
	UnknownCosigners []string `json:"unknown_cosigners,omitempty"`
	// CheckpointsUnchecked counts checkpoints whose root could not be
	// compared, because leaf hashes below them are lost.
	CheckpointsUnchecked uint64 `json:"checkpoints_unchecked,omitempty"`
	// CheckpointsMismatched counts checkpoints whose root differs from
	// the stored tree (the first is a problem; later ones follow from it).
	CheckpointsMismatched uint64 `json:"checkpoints_mismatched,omitempty"`
	// Problems, first bad index first. ProblemsOmitted counts those left
	// out beyond Options.MaxProblems.
	Problems        []Problem     `json:"problems"`
	ProblemsOmitted int           `json:"problems_omitted,omitempty"`
	Elapsed         time.Duration `json:"elapsed_ns"`
}

// JSON returns the report as indented JSON.
func (r *Report) JSON() ([]byte, error) {
	return json.MarshalIndent(r, "", "  ")
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) error {
	var b bytes.Buffer
	status := "INTACT"
	if !r.Intact {
		status = "NOT INTACT"
	}
	fmt.Fprintf(&b, "audit log %s: %s\n", r.Origin, status)
	fmt.Fprintf(&b, "  tree size         %d (%d entries stored", r.Size, r.Sequenced)
	if r.Sequenced > r.Size {
		fmt.Fprintf(&b, ", %d awaiting integration", r.Sequenced-r.Size)
	}
	b.WriteString(")\n")
	fmt.Fprintf(&b, "  entries checked   %d", r.EntriesChecked)
	if !r.FirstTime.IsZero() {
		fmt.Fprintf(&b, " (%s to %s)", fmtTime(r.FirstTime), fmtTime(r.LastTime))
	}
	b.WriteString("\n")
	if r.Pruned > 0 {
		fmt.Fprintf(&b, "  pruned            entries 0–%d are pruned; %d leaf hashes taken from tiles\n", r.Pruned-1, r.HashesFromTiles)
	}
	fmt.Fprintf(&b, "  log key           %s (%s)\n", r.LogKey, keySourceText(r.LogKeySource))
	fmt.Fprintf(&b, "  checkpoints       %d own, %d external\n", r.CheckpointsOwn, r.CheckpointsExternal)
	for _, e := range r.External {
		fmt.Fprintf(&b, "    %s: size %d, %s", e.Source, e.Size, e.Result)
		if len(e.Cosigners) > 0 {
			fmt.Fprintf(&b, ", cosigned by %s", strings.Join(e.Cosigners, ", "))
		}
		b.WriteString("\n")
	}
	for _, w := range slices.Sorted(maps.Keys(r.Cosigned)) {
		fmt.Fprintf(&b, "  witness %s cosigned %d checkpoints\n", w, r.Cosigned[w])
	}
	if len(r.UnknownCosigners) > 0 {
		fmt.Fprintf(&b, "  unknown cosigners %s (not checked: give their keys with --witness-key)\n", strings.Join(r.UnknownCosigners, ", "))
	}
	if r.CheckpointsUnchecked > 0 {
		fmt.Fprintf(&b, "  %d checkpoints could not be checked: leaf hashes below them are lost\n", r.CheckpointsUnchecked)
	}
	if len(r.Problems) > 0 {
		fmt.Fprintf(&b, "problems (first bad range first):\n")
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "  %s\n", p)
		}
		if r.ProblemsOmitted > 0 {
			fmt.Fprintf(&b, "  ... and %d more\n", r.ProblemsOmitted)
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

func (r *Report) String() string {
	var b strings.Builder
	r.WriteText(&b)
	return b.String()
}

func keySourceText(s string) string {
	if s == KeySourceStore {
		return "from the database; give --log-key to check against a key you hold"
	}
	return "given"
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return t.UTC().Format(time.RFC3339)
}
