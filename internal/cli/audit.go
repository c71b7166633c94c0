package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/auditverify"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/node"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/store/sqlite"
	"github.com/custos-dev/custos/internal/tlog"
)

// checkpointFileName is the file in the data directory where the node
// keeps the audit log's latest checkpoint (internal/node's checkpointFile),
// which `audit verify` checks the database against.
const checkpointFileName = "audit-checkpoint"

// openLogStore opens the data directory's database for reading the audit
// log, without the root key and without opening the log (which refuses a
// damaged one). It works beside a running `custos serve`.
func openLogStore(ctx context.Context, dir string) (*sqlite.Store, error) {
	if _, err := os.Stat(filepath.Join(dir, sqlite.FileName)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no custos database in %s", dir)
		}
		return nil, err
	}
	return sqlite.Open(ctx, dir)
}

// errNotIntact is returned by `custos audit verify` when the log has
// problems; the report says which.
var errNotIntact = errors.New("the audit log is NOT intact")

func auditVerify(ctx context.Context, args []string, stdio IO) error {
	fs := flags("audit verify", stdio)
	data := fs.String("data", node.DefaultDataDir, "data directory")
	var cps, wits stringList
	fs.Var(&cps, "checkpoint", "a signed checkpoint file to check the log against, e.g. one a witness holds (repeatable)")
	fs.Var(&wits, "witness-key", "a witness's cosignature verifier key (repeatable)")
	logKey := fs.String("log-key", "", "the log's verifier key (default: the key in the database, which proves less)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("custos audit verify: unexpected argument %q", fs.Arg(0))
	}
	opts := auditverify.Options{LogKey: *logKey, WitnessKeys: wits}
	// Read the checkpoints before the database: the node writes its
	// checkpoint file after the database, so the file is never ahead of
	// the state read next.
	for _, name := range cps {
		b, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		opts.Checkpoints = append(opts.Checkpoints, b)
		opts.CheckpointNames = append(opts.CheckpointNames, name)
	}
	cpFile := filepath.Join(*data, checkpointFileName)
	if b, err := os.ReadFile(cpFile); err == nil {
		opts.Checkpoints = append(opts.Checkpoints, b)
		opts.CheckpointNames = append(opts.CheckpointNames, "checkpoint file "+cpFile)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	st, err := openLogStore(ctx, *data)
	if err != nil {
		return err
	}
	defer st.Close()
	rep, err := auditverify.Verify(ctx, st, opts)
	if errors.Is(err, auditverify.ErrInvalidOptions) {
		return usagef("custos audit verify: %v", err)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		if err := writeJSONOut(stdio.Stdout, rep); err != nil {
			return err
		}
	} else if err := rep.WriteText(stdio.Stdout); err != nil {
		return err
	}
	if !rep.Intact {
		first := rep.Problems[0]
		return fmt.Errorf("%w: first problem: %s", errNotIntact, first)
	}
	return nil
}

func auditProve(ctx context.Context, args []string, stdio IO) error {
	fs := flags("audit prove", stdio)
	data := fs.String("data", node.DefaultDataDir, "data directory")
	index := fs.String("index", "", "the entry's index in the log")
	id := fs.String("id", "", "the event's id")
	jti := fs.String("jti", "", "a token id: proves the first event that names it")
	out := fs.String("out", "", "the proof file to write (required)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	given := 0
	for _, s := range []string{*index, *id, *jti} {
		if s != "" {
			given++
		}
	}
	if given != 1 || *out == "" || fs.NArg() != 0 {
		return usagef("custos audit prove: give one of --index, --id or --jti, and --out FILE")
	}
	st, err := openLogStore(ctx, *data)
	if err != nil {
		return err
	}
	defer st.Close()
	state, err := st.LogState(ctx)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	var rec audit.Record
	more := 0
	switch {
	case *index != "":
		i, err := strconv.ParseUint(*index, 10, 64)
		if err != nil {
			return usagef("custos audit prove: --index %q is not an entry index", *index)
		}
		if rec, err = readRecord(ctx, st, i, state); err != nil {
			return err
		}
	default:
		f := audit.Filter{JTI: *jti}
		found := false
		err := audit.New(nil, st, nil).Query(ctx, f, func(r audit.Record) error {
			if *id != "" && r.Event.ID != *id {
				return nil
			}
			if found {
				more++
				return nil
			}
			rec, found = r, true
			if *id != "" {
				return audit.ErrStop
			}
			return nil
		})
		if err != nil {
			return err
		}
		if !found {
			if *id != "" {
				return fmt.Errorf("no event with id %q in the log", *id)
			}
			return fmt.Errorf("no event names jti %q", *jti)
		}
	}
	signed, cp, logKey, err := latestCheckpoint(ctx, st, state)
	if err != nil {
		return err
	}
	if rec.Index >= cp.Size {
		return fmt.Errorf("entry %d is not in a checkpoint yet (the latest covers %d entries); try again in a second", rec.Index, cp.Size)
	}
	path, err := tlog.InclusionProof(ctx, st, rec.Index, cp.Size)
	if err != nil {
		return err
	}
	raw, err := event.Marshal(rec.Event)
	if err != nil {
		return err
	}
	p := auditlog.Proof{Extra: raw, Index: rec.Index, Path: path, Checkpoint: signed}
	// Check it as the reader will, before handing it out.
	v, err := note.NewVerifier(logKey)
	if err != nil {
		return err
	}
	if _, err := p.Verify(nil, v, 0); err != nil {
		return fmt.Errorf("the stored log does not prove entry %d (run custos audit verify): %w", rec.Index, err)
	}
	if err := os.WriteFile(*out, p.Marshal(), 0o644); err != nil {
		return err
	}
	if *asJSON {
		return writeJSONOut(stdio.Stdout, map[string]any{
			"file": *out, "index": rec.Index, "id": rec.Event.ID, "type": rec.Event.Type, "time": rec.Event.Time,
			"checkpoint_size": cp.Size, "log_key": logKey, "more_matches": more,
		})
	}
	fmt.Fprintf(stdio.Stdout, "wrote %s: entry %d (%s %s at %s) in the checkpoint of size %d\n",
		*out, rec.Index, rec.Event.Type, rec.Event.ID, fmtTime(rec.Event.Time), cp.Size)
	fmt.Fprintf(stdio.Stdout, "log key: %s\n", logKey)
	fmt.Fprintf(stdio.Stdout, "check it with: custos audit check-proof %s --log-key %s\n", *out, logKey)
	if more > 0 {
		fmt.Fprintf(stdio.Stderr, "note: %d later events also name jti %q; use --index to prove another\n", more, *jti)
	}
	return nil
}

// readRecord reads and parses entry i.
func readRecord(ctx context.Context, st *sqlite.Store, i uint64, state store.LogState) (audit.Record, error) {
	if i >= state.Sequenced {
		return audit.Record{}, fmt.Errorf("the log has %d entries; there is no entry %d", state.Sequenced, i)
	}
	if i < state.Pruned {
		return audit.Record{}, fmt.Errorf("entry %d is pruned (entries below %d are no longer stored)", i, state.Pruned)
	}
	var rec audit.Record
	err := tlog.ReadEntries(ctx, st, i, i+1, func(_ uint64, raw []byte) error {
		e, err := event.Parse(raw)
		if err != nil {
			return fmt.Errorf("entry %d is not a canonical event (run custos audit verify): %w", i, err)
		}
		rec = audit.Record{Index: i, Event: e}
		return nil
	})
	return rec, err
}

// latestCheckpoint returns the latest checkpoint the log stored (with any
// witness cosignatures stored with it), and the log's verifier key.
func latestCheckpoint(ctx context.Context, st *sqlite.Store, state store.LogState) ([]byte, auditlog.Checkpoint, string, error) {
	nk, err := st.NoteKey(ctx, state.Origin)
	if err != nil {
		return nil, auditlog.Checkpoint{}, "", fmt.Errorf("the audit log's key: %w", err)
	}
	vkey, err := note.NewEd25519VerifierKey(state.Origin, ed25519.PublicKey(nk.Public))
	if err != nil {
		return nil, auditlog.Checkpoint{}, "", err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, auditlog.Checkpoint{}, "", err
	}
	signed := state.Checkpoint
	if state.Integrated > 0 {
		if cps, err := st.Checkpoints(ctx, state.Integrated-1, 1); err == nil && len(cps) == 1 && cps[0].Size == state.Integrated {
			signed = cps[0].Note
		} else if err != nil {
			return nil, auditlog.Checkpoint{}, "", err
		}
	}
	if signed == nil {
		return nil, auditlog.Checkpoint{}, "", errors.New("the audit log has no checkpoint yet")
	}
	cp, _, err := auditlog.OpenCheckpoint(signed, v)
	if err != nil {
		return nil, auditlog.Checkpoint{}, "", fmt.Errorf("the latest checkpoint: %w", err)
	}
	return signed, cp, vkey, nil
}

func auditCheckProof(ctx context.Context, args []string, stdio IO) error {
	fs := flags("audit check-proof", stdio)
	logKey := fs.String("log-key", "", "the log's verifier key (required)")
	var wits stringList
	fs.Var(&wits, "witness-key", "a witness's cosignature verifier key (repeatable)")
	quorum := fs.Int("quorum", -1, "how many of the witnesses must have cosigned (default: all given)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *logKey == "" {
		return usagef("custos audit check-proof: give the proof FILE and --log-key VKEY")
	}
	lv, err := note.NewVerifier(*logKey)
	if err != nil {
		return usagef("custos audit check-proof: --log-key: %v", err)
	}
	var wv []note.Verifier
	for _, k := range wits {
		v, err := auditlog.NewCosignatureVerifier(k)
		if err != nil {
			return usagef("custos audit check-proof: --witness-key %q: %v", k, err)
		}
		wv = append(wv, v)
	}
	q := *quorum
	if q < 0 {
		q = len(wv)
	}
	if q > len(wv) {
		return usagef("custos audit check-proof: --quorum %d exceeds the %d witness keys given", q, len(wv))
	}
	var b []byte
	if fs.Arg(0) == "-" {
		b, err = io.ReadAll(io.LimitReader(stdio.Stdin, 2*auditlog.MaxNoteSize))
	} else {
		b, err = os.ReadFile(fs.Arg(0))
	}
	if err != nil {
		return err
	}
	p, err := auditlog.ParseProof(b)
	if err != nil {
		return fmt.Errorf("proof: %w", err)
	}
	cp, err := p.Verify(nil, lv, q, wv...)
	if err != nil {
		return fmt.Errorf("proof does not verify: %w", err)
	}
	e, err := event.Parse(p.Extra)
	if err != nil {
		return fmt.Errorf("the proven entry is not a custos audit event: %w", err)
	}
	var cosigners []string
	if _, n, err := auditlog.OpenCheckpoint(p.Checkpoint, lv, wv...); err == nil {
		for _, s := range n.Sigs {
			if s.Name != lv.Name() || s.Hash != lv.KeyHash() {
				t, _ := auditlog.CosignatureTime(s)
				cosigners = append(cosigners, s.Name+" at "+fmtTime(t))
			}
		}
	}
	if *asJSON {
		return writeJSONOut(stdio.Stdout, map[string]any{
			"verified": true, "origin": cp.Origin, "index": p.Index, "checkpoint_size": cp.Size,
			"cosigned_by": cosigners, "event": eventJSON(audit.Record{Index: p.Index, Event: e}),
		})
	}
	fmt.Fprintf(stdio.Stdout, "verified: entry %d of %s is in its checkpoint of size %d\n", p.Index, cp.Origin, cp.Size)
	if len(cosigners) > 0 {
		fmt.Fprintf(stdio.Stdout, "cosigned by: %s\n", strings.Join(cosigners, ", "))
	}
	writeEvent(stdio.Stdout, e)
	return nil
}

func writeEvent(w io.Writer, e event.Event) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%s\n", e.ID)
	fmt.Fprintf(tw, "time\t%s\n", e.Time.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(tw, "class\t%s\n", e.Class)
	fmt.Fprintf(tw, "type\t%s\n", e.Type)
	for _, kv := range [][2]string{{"actor", e.Actor}, {"subject", e.Subject}, {"client", e.Client}, {"ip", e.IP}} {
		if kv[1] != "" {
			fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
		}
	}
	for _, k := range sortedFieldKeys(e.Fields) {
		fmt.Fprintf(tw, "%s\t%v\n", k, e.Fields[k])
	}
	tw.Flush()
}

func sortedFieldKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// eventRecordJSON is an event as `audit query --json` prints it.
type eventRecordJSON struct {
	Index   uint64         `json:"index"`
	ID      string         `json:"id"`
	Time    string         `json:"time"`
	Class   event.Class    `json:"class"`
	Type    string         `json:"type"`
	Actor   string         `json:"actor,omitempty"`
	Subject string         `json:"subject,omitempty"`
	Client  string         `json:"client,omitempty"`
	IP      string         `json:"ip,omitempty"`
	Fields  map[string]any `json:"fields,omitempty"`
}

func eventJSON(r audit.Record) eventRecordJSON {
	e := r.Event
	return eventRecordJSON{r.Index, e.ID, e.Time.UTC().Format(time.RFC3339Nano), e.Class, e.Type, e.Actor, e.Subject, e.Client, e.IP, e.Fields}
}

func auditQuery(ctx context.Context, args []string, stdio IO) error {
	fs := flags("audit query", stdio)
	data := fs.String("data", node.DefaultDataDir, "data directory")
	since := fs.String("since", "", "events at or after this time (RFC 3339, or a date YYYY-MM-DD in UTC)")
	until := fs.String("until", "", "events before this time (RFC 3339, or a date YYYY-MM-DD in UTC)")
	var classes, types stringList
	fs.Var(&classes, "class", "event class: "+classNames()+" (repeatable)")
	fs.Var(&types, "type", "event type, e.g. token_issued (repeatable)")
	var f audit.Filter
	fs.StringVar(&f.Subject, "subject", "", "whose account or data the event is about")
	fs.StringVar(&f.JTI, "jti", "", "a token id (field jti or any *_jti)")
	fs.StringVar(&f.KID, "kid", "", "a signing key id (field kid)")
	fs.StringVar(&f.Client, "client", "", "client id")
	fs.StringVar(&f.IP, "ip", "", "client IP address")
	limit := fs.Int("limit", 0, "at most this many events (0: all)")
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("custos audit query: unexpected argument %q", fs.Arg(0))
	}
	var err error
	if f.Since, err = parseTimeFlag("since", *since); err != nil {
		return err
	}
	if f.Until, err = parseTimeFlag("until", *until); err != nil {
		return err
	}
	for _, c := range classes {
		if !event.Class(c).Valid() {
			return usagef("custos audit query: --class %q is not one of %s", c, classNames())
		}
		f.Classes = append(f.Classes, event.Class(c))
	}
	f.Types = types
	if *limit < 0 {
		return usagef("custos audit query: --limit must not be negative")
	}
	st, err := openLogStore(ctx, *data)
	if err != nil {
		return err
	}
	defer st.Close()
	var tw *tabwriter.Writer
	if *asJSON {
		io.WriteString(stdio.Stdout, "[")
	} else {
		tw = tabwriter.NewWriter(stdio.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "INDEX\tTIME\tCLASS\tTYPE\tACTOR\tSUBJECT\tCLIENT\tIP\tFIELDS")
	}
	n := 0
	err = audit.New(nil, st, nil).Query(ctx, f, func(r audit.Record) error {
		if *asJSON {
			var b bytes.Buffer
			if n > 0 {
				b.WriteString(",")
			}
			b.WriteString("\n")
			if err := writeJSONOut(&b, eventJSON(r)); err != nil {
				return err
			}
			if _, err := stdio.Stdout.Write(bytes.TrimSuffix(b.Bytes(), []byte("\n"))); err != nil {
				return err
			}
		} else {
			e := r.Event
			var fields []string
			for _, k := range sortedFieldKeys(e.Fields) {
				fields = append(fields, fmt.Sprintf("%s=%v", k, e.Fields[k]))
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Index, fmtTime(e.Time), e.Class, e.Type,
				dash(e.Actor), dash(e.Subject), dash(e.Client), dash(e.IP), strings.Join(fields, " "))
		}
		n++
		if *limit > 0 && n >= *limit {
			return audit.ErrStop
		}
		return nil
	})
	if *asJSON {
		io.WriteString(stdio.Stdout, "\n]\n")
	} else if ferr := tw.Flush(); err == nil {
		err = ferr
	}
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func classNames() string {
	var names []string
	for _, c := range event.Classes() {
		names = append(names, string(c))
	}
	return strings.Join(names, ", ")
}

// parseTimeFlag parses an RFC 3339 time or a YYYY-MM-DD date (midnight
// UTC); empty is the zero time.
func parseTimeFlag(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, usagef("custos audit query: --%s %q is not an RFC 3339 time or a YYYY-MM-DD date", name, s)
}
