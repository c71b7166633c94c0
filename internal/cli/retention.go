package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
)

// auditHold is "custos audit hold": legal holds on the audit log.
func auditHold(ctx context.Context, args []string, stdio IO) error {
	return subcommand(ctx, "audit hold", args, stdio, map[string]func(context.Context, []string, IO) error{
		"add": holdAdd, "list": holdList, "release": holdRelease,
	})
}

// auditRetention is "custos audit retention": retention per event class.
func auditRetention(ctx context.Context, args []string, stdio IO) error {
	return subcommand(ctx, "audit retention", args, stdio, map[string]func(context.Context, []string, IO) error{
		"show": retentionShow, "set": retentionSet,
	})
}

// parseHoldTime reads an RFC 3339 time or a date (YYYY-MM-DD, midnight
// UTC).
func parseHoldTime(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, usagef("custos audit hold add: --%s is required", flag)
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, usagef("custos audit hold add: --%s %q: want an RFC 3339 time (2025-05-23T00:00:00+09:00) or a date (2025-05-23, UTC)", flag, s)
}

func parseClasses(cmd string, names []string) ([]event.Class, error) {
	var out []event.Class
	for _, n := range names {
		c := event.Class(n)
		if !c.Valid() {
			var all []string
			for _, k := range event.Classes() {
				all = append(all, string(k))
			}
			return nil, usagef("custos %s: unknown class %q (want %s)", cmd, n, strings.Join(all, ", "))
		}
		out = append(out, c)
	}
	return out, nil
}

func requireReason(cmd, reason string) error {
	if strings.TrimSpace(reason) == "" {
		return usagef("custos %s: --reason is required", cmd)
	}
	return nil
}

func holdAdd(ctx context.Context, args []string, stdio IO) error {
	fs := flags("audit hold add", stdio)
	var nf nodeFlags
	nf.register(fs)
	from := fs.String("from", "", "first event time held (RFC 3339, or YYYY-MM-DD for midnight UTC)")
	until := fs.String("until", "", "end of the held range, exclusive (RFC 3339 or YYYY-MM-DD)")
	var classes stringList
	fs.Var(&classes, "class", "event class held (repeatable; default: every class)")
	reason := fs.String("reason", "", "why: the order or case (required; recorded)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("custos audit hold add: unexpected arguments %q", fs.Args())
	}
	if err := requireReason("audit hold add", *reason); err != nil {
		return err
	}
	f, err := parseHoldTime("from", *from)
	if err != nil {
		return err
	}
	u, err := parseHoldTime("until", *until)
	if err != nil {
		return err
	}
	if !f.Before(u) {
		return usagef("custos audit hold add: --from must be before --until")
	}
	cs, err := parseClasses("audit hold add", classes)
	if err != nil {
		return err
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	h, err := n.Retention.PlaceHold(ctx, audit.HoldSpec{From: f, Until: u, Classes: cs, Reason: *reason, By: actor()})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdio.Stdout, "placed %s: %s events from %s until %s are kept until the hold is released\n",
		h.ID, classesText(h.Classes), fmtTime(h.From), fmtTime(h.Until))
	return nil
}

func classesText(cs []string) string {
	if len(cs) == 0 {
		return "all"
	}
	return strings.Join(cs, ",")
}

func holdState(h store.Hold, now time.Time) string {
	switch {
	case h.ReleaseRequestedAt.IsZero():
		return "active"
	case audit.HoldActive(h, now):
		return "releasing"
	default:
		return "released"
	}
}

func holdList(ctx context.Context, args []string, stdio IO) error {
	fs := flags("audit hold list", stdio)
	var nf nodeFlags
	nf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("custos audit hold list: unexpected arguments %q", fs.Args())
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	holds, err := n.Retention.Holds(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	if *asJSON {
		type holdJSON struct {
			ID                 string    `json:"id"`
			State              string    `json:"state"`
			From               time.Time `json:"from"`
			Until              time.Time `json:"until"`
			Classes            []string  `json:"classes"`
			Reason             string    `json:"reason"`
			CreatedBy          string    `json:"created_by"`
			CreatedAt          time.Time `json:"created_at"`
			ReleaseRequestedAt time.Time `json:"release_requested_at,omitzero"`
			ReleaseEffectiveAt time.Time `json:"release_effective_at,omitzero"`
			ReleasedBy         string    `json:"released_by,omitempty"`
			ReleaseReason      string    `json:"release_reason,omitempty"`
		}
		out := []holdJSON{}
		for _, h := range holds {
			cs := h.Classes
			if cs == nil {
				cs = []string{}
			}
			out = append(out, holdJSON{h.ID, holdState(h, now), h.From, h.Until, cs, h.Reason, h.CreatedBy, h.CreatedAt,
				h.ReleaseRequestedAt, h.ReleaseEffectiveAt, h.ReleasedBy, h.ReleaseReason})
		}
		return writeJSONOut(stdio.Stdout, out)
	}
	tw := tabwriter.NewWriter(stdio.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tFROM\tUNTIL\tCLASSES\tBY\tENDS\tREASON")
	for _, h := range holds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, holdState(h, now), fmtTime(h.From), fmtTime(h.Until),
			classesText(h.Classes), h.CreatedBy, fmtTime(h.ReleaseEffectiveAt), h.Reason)
	}
	return tw.Flush()
}

func holdRelease(ctx context.Context, args []string, stdio IO) error {
	fs := flags("audit hold release", stdio)
	var nf nodeFlags
	nf.register(fs)
	reason := fs.String("reason", "", "why the hold ends (required; recorded)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("custos audit hold release: give exactly one hold id")
	}
	if err := requireReason("audit hold release", *reason); err != nil {
		return err
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	h, err := n.Retention.ReleaseHold(ctx, fs.Arg(0), actor(), *reason)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdio.Stdout, "release of %s requested: the hold stays in effect until %s\n", h.ID, fmtTime(h.ReleaseEffectiveAt))
	return nil
}

func retentionShow(ctx context.Context, args []string, stdio IO) error {
	fs := flags("audit retention show", stdio)
	var nf nodeFlags
	nf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("custos audit retention show: unexpected arguments %q", fs.Args())
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	ps, err := n.Retention.Policy(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		type policyJSON struct {
			Class              string    `json:"class"`
			Retention          string    `json:"retention"`
			RetentionSeconds   int64     `json:"retention_seconds"`
			Default            bool      `json:"default"`
			Floor              string    `json:"floor"`
			SetBy              string    `json:"set_by,omitempty"`
			SetReason          string    `json:"set_reason,omitempty"`
			SetAt              time.Time `json:"set_at,omitzero"`
			Pending            string    `json:"pending,omitempty"`
			PendingBy          string    `json:"pending_by,omitempty"`
			PendingReason      string    `json:"pending_reason,omitempty"`
			PendingEffectiveAt time.Time `json:"pending_effective_at,omitzero"`
		}
		out := []policyJSON{}
		for _, p := range ps {
			pj := policyJSON{Class: string(p.Class), Retention: audit.FormatDuration(p.Retention), RetentionSeconds: int64(p.Retention / time.Second),
				Default: p.Default, Floor: audit.FormatDuration(p.Floor), SetBy: p.SetBy, SetReason: p.SetReason, SetAt: p.SetAt,
				PendingBy: p.PendingBy, PendingReason: p.PendingReason, PendingEffectiveAt: p.PendingEffectiveAt}
			if p.Pending != 0 {
				pj.Pending = audit.FormatDuration(p.Pending)
			}
			out = append(out, pj)
		}
		return writeJSONOut(stdio.Stdout, out)
	}
	tw := tabwriter.NewWriter(stdio.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLASS\tRETENTION\tFLOOR\tPENDING\tSET BY\tREASON")
	for _, p := range ps {
		pending, setBy := "-", "default"
		if p.Pending != 0 {
			pending = audit.FormatDuration(p.Pending) + " from " + fmtTime(p.PendingEffectiveAt)
		}
		if !p.Default {
			setBy = p.SetBy
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Class, audit.FormatDuration(p.Retention), audit.FormatDuration(p.Floor), pending, setBy, p.SetReason)
	}
	return tw.Flush()
}

func retentionSet(ctx context.Context, args []string, stdio IO) error {
	fs := flags("audit retention set", stdio)
	var nf nodeFlags
	nf.register(fs)
	reason := fs.String("reason", "", "why (required; recorded)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usagef("custos audit retention set: give a class and a duration (e.g. access 3y, token 800d)")
	}
	cs, err := parseClasses("audit retention set", fs.Args()[:1])
	if err != nil {
		return err
	}
	d, err := audit.ParseDuration(fs.Arg(1))
	if err != nil {
		return usagef("custos audit retention set: %q is not a duration: give years (2y), days (730d) or hours (17568h)", fs.Arg(1))
	}
	if err := requireReason("audit retention set", *reason); err != nil {
		return err
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	p, err := n.Retention.SetRetention(ctx, cs[0], d, actor(), *reason)
	if err != nil {
		return err
	}
	if p.Pending != 0 {
		fmt.Fprintf(stdio.Stdout, "retention of %s events becomes %s at %s (shortening waits %s); until then it stays %s\n",
			p.Class, audit.FormatDuration(p.Pending), fmtTime(p.PendingEffectiveAt), audit.FormatDuration(audit.DefaultChangeDelay), audit.FormatDuration(p.Retention))
		return nil
	}
	fmt.Fprintf(stdio.Stdout, "retention of %s events is now %s\n", p.Class, audit.FormatDuration(p.Retention))
	return nil
}

func auditPrune(ctx context.Context, args []string, stdio IO) error {
	fs := flags("audit prune", stdio)
	var nf nodeFlags
	nf.register(fs)
	dry := fs.Bool("dry-run", false, "say what would be pruned, and change nothing")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("custos audit prune: unexpected arguments %q", fs.Args())
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	var p audit.Plan
	if *dry {
		p, err = n.Retention.PlanPrune(ctx, time.Now())
	} else {
		p, err = n.Retention.Prune(ctx, time.Now(), actor())
	}
	if err != nil {
		return err
	}
	if *asJSON {
		type keptJSON struct {
			Index uint64    `json:"index"`
			Time  time.Time `json:"time,omitzero"`
			Class string    `json:"class,omitempty"`
		}
		out := struct {
			DryRun    bool      `json:"dry_run"`
			Start     uint64    `json:"start"`
			Point     uint64    `json:"point"`
			Count     uint64    `json:"count"`
			From      time.Time `json:"from,omitzero"`
			Until     time.Time `json:"until,omitzero"`
			BlockedBy string    `json:"blocked_by"`
			Kept      *keptJSON `json:"kept,omitempty"`
		}{*dry, p.Start, p.Point, p.Count, p.From, p.Until, p.BlockedBy, nil}
		if p.Kept != nil {
			out.Kept = &keptJSON{p.Kept.Index, p.Kept.Time, string(p.Kept.Class)}
		}
		return writeJSONOut(stdio.Stdout, out)
	}
	verb := "pruned"
	if *dry {
		verb = "would prune"
	}
	if p.Count == 0 {
		fmt.Fprintf(stdio.Stdout, "nothing to prune: entries from %d are kept (%s)\n", p.Start, blockedText(p))
		return nil
	}
	fmt.Fprintf(stdio.Stdout, "%s %d entries [%d, %d), events from %s to %s; kept from %d (%s)\n",
		verb, p.Count, p.Start, p.Point, fmtTime(p.From), fmtTime(p.Until), p.Point, blockedText(p))
	return nil
}

func blockedText(p audit.Plan) string {
	switch b := p.BlockedBy; {
	case strings.HasPrefix(b, "hold:"):
		return "legal hold " + strings.TrimPrefix(b, "hold:")
	case strings.HasPrefix(b, "retention:"):
		return "retention of " + strings.TrimPrefix(b, "retention:") + " events has not passed"
	case b == audit.BlockedUndecodable:
		return "an entry that does not decode"
	case b == audit.BlockedEnd:
		return "end of the log"
	case b == audit.BlockedScanLimit:
		return "scan limit reached; run again"
	default:
		return b
	}
}
