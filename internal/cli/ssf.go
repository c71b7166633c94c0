package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/custos-dev/custos/internal/node"
	"github.com/custos-dev/custos/internal/ssf"
	"github.com/custos-dev/custos/internal/store"
)

func ssfCmd(ctx context.Context, args []string, stdio IO) error {
	return subcommand(ctx, "ssf", args, stdio, map[string]func(context.Context, []string, IO) error{
		"add": ssfAdd, "list": ssfList, "remove": ssfRemove,
	})
}

func ssfAdd(ctx context.Context, args []string, stdio IO) error {
	fs := flags("ssf add", stdio)
	var nf nodeFlags
	nf.register(fs)
	var spec node.SSFStreamSpec
	fs.StringVar(&spec.ID, "id", "", "the stream's name ([a-z0-9_-])")
	fs.StringVar(&spec.Audience, "audience", "", "the receiver's identifier, the aud of its tokens")
	fs.StringVar(&spec.Push, "push", "", "push (RFC 8935) to this URL; without it, the receiver polls (RFC 8936)")
	fs.StringVar(&spec.AuthEnv, "auth-env", "", "push: an environment variable holding the Authorization header to send")
	var events stringList
	fs.Var(&events, "event", "session-revoked, credential-change or account-disabled (repeatable; default all)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 || spec.ID == "" || spec.Audience == "" {
		return usagef("custos ssf add: --id and --audience are required, and nothing else")
	}
	spec.Events = events
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	secret, err := n.AddSSFStream(ctx, spec, actor())
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("stream %q exists, or existed: a stream id is never reused", spec.ID)
	}
	if err != nil {
		return err
	}
	if spec.Push != "" {
		fmt.Fprintf(stdio.Stdout, "stream %s: security events are pushed to its URL from now on\n", spec.ID)
		return nil
	}
	fmt.Fprintf(stdio.Stdout, "stream %s: the receiver polls %s%s%s with\n  Authorization: Bearer %s\n(shown once; custos keeps only its hash)\n",
		spec.ID, n.Config().Issuer, node.PathSSFPoll, spec.ID, secret)
	return nil
}

func ssfList(ctx context.Context, args []string, stdio IO) error {
	fs := flags("ssf list", stdio)
	var nf nodeFlags
	nf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	streams, err := n.Store.SSFStreams(ctx)
	if err != nil {
		return err
	}
	if len(streams) == 0 {
		fmt.Fprintln(stdio.Stdout, "no streams")
		return nil
	}
	short := map[string]string{}
	for name, uri := range ssf.EventTypes {
		short[uri] = name
	}
	tw := tabwriter.NewWriter(stdio.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDELIVERY\tAUDIENCE\tEVENTS\tSINCE")
	for _, s := range streams {
		var evs []string
		for _, e := range s.Events {
			evs = append(evs, short[e])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, s.Delivery, orDash(s.Audience), strings.Join(evs, ","), fmtTime(s.CreatedAt))
	}
	return tw.Flush()
}

func ssfRemove(ctx context.Context, args []string, stdio IO) error {
	fs := flags("ssf remove", stdio)
	var nf nodeFlags
	nf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("custos ssf remove: give exactly one stream id")
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	if err := n.RemoveSSFStream(ctx, fs.Arg(0), actor()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no stream %q", fs.Arg(0))
		}
		return err
	}
	fmt.Fprintf(stdio.Stdout, "stream %s removed; what was queued for it is not sent\n", fs.Arg(0))
	return nil
}
