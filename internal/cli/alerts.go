package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/custos-dev/custos/internal/audit"
	"github.com/custos-dev/custos/internal/detect"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/node"
	"github.com/custos-dev/custos/internal/store"
)

func alertsCmd(ctx context.Context, args []string, stdio IO) error {
	return subcommand(ctx, "alerts", args, stdio, map[string]func(context.Context, []string, IO) error{
		"list": alertsList, "show": alertsShow, "ack": alertsAck, "rules": alertsRules,
		"blocks": alertsBlocks, "unblock": alertsUnblock,
	})
}

func alertsList(ctx context.Context, args []string, stdio IO) error {
	fs := flags("alerts list", stdio)
	var nf nodeFlags
	nf.register(fs)
	state := fs.String("state", "open", "open, acked or all")
	rule := fs.String("rule", "", "only this rule's alerts")
	limit := fs.Int("limit", 100, "at most this many, the most recently raised first")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	f := store.AlertFilter{Rule: *rule, Limit: *limit}
	switch *state {
	case "open", "acked":
		f.State = store.AlertState(*state)
	case "all":
	default:
		return usagef("custos alerts list: --state: want open, acked or all, got %q", *state)
	}
	if fs.NArg() != 0 || *limit < 1 {
		return usagef("custos alerts list: takes no arguments, and --limit must be positive")
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	list, err := n.Store.Alerts(ctx, f)
	if err != nil {
		return err
	}
	if *asJSON {
		out := make([]node.AlertJSON, 0, len(list))
		for _, a := range list {
			out = append(out, node.AlertView(a))
		}
		return writeJSONOut(stdio.Stdout, out)
	}
	if len(list) == 0 {
		fmt.Fprintf(stdio.Stdout, "no %s alerts\n", *state)
		return nil
	}
	tw := tabwriter.NewWriter(stdio.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSEVERITY\tSTATE\tCOUNT\tRAISED\tLAST\tGROUP\tTITLE")
	for _, a := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", a.ID, a.Severity, a.State, a.Count,
			fmtTime(a.RaisedAt), fmtTime(a.LastAt), orDash(a.Group), a.Title)
	}
	return tw.Flush()
}

// orDash is s for a terminal: "-" when empty, quoted when it holds what a
// terminal would act on (groups come from events, which come from outside).
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	if strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) {
		return strconv.Quote(s)
	}
	return s
}

func alertsShow(ctx context.Context, args []string, stdio IO) error {
	fs := flags("alerts show", stdio)
	var nf nodeFlags
	nf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("custos alerts show: give exactly one alert id")
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	a, err := n.Store.Alert(ctx, fs.Arg(0))
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no alert %q", fs.Arg(0))
	}
	if err != nil {
		return err
	}
	// The events that raised it and that last grew it, from the log.
	var evidence []audit.Record
	for _, idx := range []uint64{a.FirstIndex, a.LastIndex} {
		if len(evidence) > 0 && idx == evidence[0].Index {
			break
		}
		err := n.Audit.Query(ctx, audit.Filter{After: idx}, func(r audit.Record) error {
			if r.Index == idx { // else retention pruned it
				evidence = append(evidence, r)
			}
			return audit.ErrStop
		})
		if err != nil {
			return err
		}
	}
	if *asJSON {
		type evJSON struct {
			Index uint64          `json:"index"`
			Event json.RawMessage `json:"event"`
		}
		out := struct {
			node.AlertJSON
			Events []evJSON `json:"events"`
		}{AlertJSON: node.AlertView(a)}
		for _, r := range evidence {
			b, err := event.Marshal(r.Event)
			if err != nil {
				return err
			}
			out.Events = append(out.Events, evJSON{Index: r.Index, Event: b})
		}
		return writeJSONOut(stdio.Stdout, out)
	}
	w := stdio.Stdout
	fmt.Fprintf(w, "alert     %s\nrule      %s (%s)\ntitle     %s\ngroup     %s\nstate     %s\n", a.ID, a.Rule, a.Severity, a.Title, orDash(a.Group), a.State)
	fmt.Fprintf(w, "count     %d events, log entries %d to %d\nfirst     %s\nlast      %s\nraised    %s\n",
		a.Count, a.FirstIndex, a.LastIndex, fmtTime(a.FirstAt), fmtTime(a.LastAt), fmtTime(a.RaisedAt))
	if a.State == store.AlertAcked {
		fmt.Fprintf(w, "acked     %s by %s: %s\n", fmtTime(a.AckedAt), orDash(a.AckedBy), orDash(a.AckNote))
	}
	for i, r := range evidence {
		label := "first event"
		if i > 0 {
			label = "last event"
		}
		b, err := event.Marshal(r.Event)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s (entry %d):\n  %s\n", label, r.Index, b)
	}
	fmt.Fprintf(w, "prove it: custos audit prove %d\n", a.FirstIndex)
	return nil
}

func alertsAck(ctx context.Context, args []string, stdio IO) error {
	fs := flags("alerts ack", stdio)
	var nf nodeFlags
	nf.register(fs)
	note := fs.String("note", "", "what was done about it (required; recorded in the audit log)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("custos alerts ack: give exactly one alert id")
	}
	if *note == "" {
		return usagef("custos alerts ack: --note is required: say what was done")
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	a, err := n.AckAlert(ctx, fs.Arg(0), actor(), *note)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no alert %q", fs.Arg(0))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdio.Stdout, "acknowledged %s (%s, %d events); its pattern's next event opens a new alert\n", a.ID, a.Rule, a.Count)
	return nil
}

// alertsBlocks lists the IPs the guard refuses now.
func alertsBlocks(ctx context.Context, args []string, stdio IO) error {
	fs := flags("alerts blocks", stdio)
	var nf nodeFlags
	nf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("custos alerts blocks: takes no arguments")
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	list, err := n.Store.IPBlocks(ctx, time.Now())
	if err != nil {
		return err
	}
	if *asJSON {
		type blockJSON struct {
			IP        string    `json:"ip"`
			Until     time.Time `json:"until"`
			Reason    string    `json:"reason"`
			CreatedAt time.Time `json:"created_at"`
		}
		out := make([]blockJSON, 0, len(list))
		for _, b := range list {
			out = append(out, blockJSON{b.IP, b.Until, b.Reason, b.CreatedAt})
		}
		return writeJSONOut(stdio.Stdout, out)
	}
	if len(list) == 0 {
		fmt.Fprintln(stdio.Stdout, "no IP is blocked")
		return nil
	}
	tw := tabwriter.NewWriter(stdio.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IP\tUNTIL\tSINCE\tREASON")
	for _, b := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", b.IP, fmtTime(b.Until), fmtTime(b.CreatedAt), b.Reason)
	}
	return tw.Flush()
}

// alertsUnblock lifts a block.
func alertsUnblock(ctx context.Context, args []string, stdio IO) error {
	fs := flags("alerts unblock", stdio)
	var nf nodeFlags
	nf.register(fs)
	note := fs.String("note", "", "why the block is lifted (required; recorded in the audit log)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || net.ParseIP(fs.Arg(0)) == nil {
		return usagef("custos alerts unblock: give exactly one IP address")
	}
	if *note == "" {
		return usagef("custos alerts unblock: --note is required: say why")
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	if err := n.UnblockIP(ctx, fs.Arg(0), actor(), *note); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%s is not blocked", fs.Arg(0))
		}
		return err
	}
	fmt.Fprintf(stdio.Stdout, "lifted the block on %s; guards see it within a second\n", fs.Arg(0))
	return nil
}

// alertsRules prints the built-in rules, or checks a rules file.
func alertsRules(ctx context.Context, args []string, stdio IO) error {
	fs := flags("alerts rules", stdio)
	check := fs.String("check", "", "check this rules file and list its rules, instead of printing the built-in ones")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("custos alerts rules: takes no arguments")
	}
	if *check == "" {
		_, err := io.WriteString(stdio.Stdout, detect.DefaultRulesText())
		return err
	}
	rules, err := loadRules(*check)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdio.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s: %d rules, sha256 %s\n", *check, len(rules.Rules), rules.Digest)
	for _, r := range rules.Rules {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", r.Name, r.Severity, r.Title)
	}
	return tw.Flush()
}

// loadRules reads a rules file.
func loadRules(path string) (*detect.Rules, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("detection rules: %w", err)
	}
	defer f.Close()
	return detect.ParseRules(path, f)
}

// webhookList is the repeatable --alert-webhook NAME=URL flag.
type webhookList struct {
	hooks []detect.Webhook
	err   error
}

var webhookName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

func (l *webhookList) String() string {
	if l == nil {
		return ""
	}
	names := make([]string, len(l.hooks))
	for i, h := range l.hooks {
		names[i] = h.Name // never the URL, which may carry credentials
	}
	return strings.Join(names, ",")
}

func (l *webhookList) Set(v string) error {
	name, raw, ok := strings.Cut(v, "=")
	if !ok || !webhookName.MatchString(name) {
		l.err = errors.Join(l.err, fmt.Errorf("want NAME=URL with NAME of [a-z0-9_-], got %.40q", name))
		return nil
	}
	u, err := detect.ParseWebhookURL(raw)
	if err != nil {
		l.err = errors.Join(l.err, fmt.Errorf("%s: %w", name, err))
		return nil
	}
	for _, h := range l.hooks {
		if h.Name == name {
			l.err = errors.Join(l.err, fmt.Errorf("webhook %s given twice", name))
			return nil
		}
	}
	l.hooks = append(l.hooks, detect.Webhook{Name: name, URL: u})
	return nil
}

// minWebhookSecret is the shortest signing secret taken.
const minWebhookSecret = 32

// signWith gives every webhook the secret in the environment variable env.
func (l *webhookList) signWith(env string) error {
	if len(l.hooks) == 0 {
		if env != "" {
			return errors.New("--alert-webhook-secret-env without --alert-webhook")
		}
		return nil
	}
	if env == "" {
		return fmt.Errorf("alert webhooks are signed: set --alert-webhook-secret-env to a variable holding at least %d bytes", minWebhookSecret)
	}
	secret := os.Getenv(env)
	if len(secret) < minWebhookSecret {
		return fmt.Errorf("--alert-webhook-secret-env: $%s holds %d bytes, want at least %d", env, len(secret), minWebhookSecret)
	}
	for i := range l.hooks {
		l.hooks[i].Secret = []byte(secret)
	}
	return nil
}
