package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custos-dev/custos/internal/accounts"
	"github.com/custos-dev/custos/internal/clients"
	"github.com/custos-dev/custos/internal/store"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*s = append(*s, part)
		}
	}
	return nil
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func keysCmd(ctx context.Context, args []string, stdio IO) error {
	return subcommand(ctx, "keys", args, stdio, map[string]func(context.Context, []string, IO) error{
		"list": keysList, "rotate": keysRotate, "revoke": keysRevoke, "import": keysImport, "offboard": keysOffboard,
	})
}

func keysList(ctx context.Context, args []string, stdio IO) error {
	fs := flags("keys list", stdio)
	var nf nodeFlags
	nf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	list, err := n.Custody.List(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		type keyJSON struct {
			ID           string    `json:"kid"`
			Algorithm    string    `json:"alg"`
			State        string    `json:"state"`
			Published    bool      `json:"published"`
			Imported     bool      `json:"imported"`
			Exposure     string    `json:"exposure"`
			Custodian    string    `json:"custodian"`
			CreatedAt    time.Time `json:"created_at"`
			ActivatedAt  time.Time `json:"activated_at,omitzero"`
			RetiredAt    time.Time `json:"retired_at,omitzero"`
			RevokedAt    time.Time `json:"revoked_at,omitzero"`
			PublishUntil time.Time `json:"publish_until,omitzero"`
			Note         string    `json:"note,omitempty"`
		}
		out := []keyJSON{}
		for _, k := range list {
			exposure := "sealed"
			if k.Imported {
				exposure = "unknown"
			}
			out = append(out, keyJSON{k.ID, k.Algorithm, string(k.State), k.Published, k.Imported, exposure, k.Custodian,
				k.CreatedAt, k.ActivatedAt, k.RetiredAt, k.RevokedAt, k.PublishUntil, k.Note})
		}
		return writeJSONOut(stdio.Stdout, out)
	}
	tw := tabwriter.NewWriter(stdio.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tSTATE\tPUBLISHED\tCREATED\tACTIVATED\tRETIRED/REVOKED\tFLAGS")
	for _, k := range list {
		flags := ""
		if k.Imported {
			flags = "IMPORTED: exposure unknown"
		}
		end := k.RetiredAt
		if !k.RevokedAt.IsZero() {
			end = k.RevokedAt
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\t%s\n", k.ID, k.Algorithm, k.State, k.Published,
			fmtTime(k.CreatedAt), fmtTime(k.ActivatedAt), fmtTime(end), flags)
	}
	return tw.Flush()
}

func keysRotate(ctx context.Context, args []string, stdio IO) error {
	fs := flags("keys rotate", stdio)
	var nf nodeFlags
	nf.register(fs)
	reason := fs.String("reason", "manual rotation", "why (recorded in the audit trail)")
	if err := parse(fs, args); err != nil {
		return err
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	if err := n.Custody.Rotate(ctx, actor(), *reason); err != nil {
		return err
	}
	fmt.Fprintln(stdio.Stdout, "rotated: the pending key now signs; the previous key is retired and stays published until its tokens expire")
	return nil
}

func keysRevoke(ctx context.Context, args []string, stdio IO) error {
	fs := flags("keys revoke", stdio)
	var nf nodeFlags
	nf.register(fs)
	reason := fs.String("reason", "", "why the key is revoked (required; recorded)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("custos keys revoke: give exactly one key id")
	}
	if strings.TrimSpace(*reason) == "" {
		return usagef("custos keys revoke: --reason is required")
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	kid := fs.Arg(0)
	if err := n.Custody.Revoke(ctx, kid, actor(), *reason); err != nil {
		return err
	}
	fmt.Fprintf(stdio.Stdout, "revoked %s: unpublished, and every token it signed is refused; a running custos applies this within a second\n", kid)
	return nil
}

// keysOffboard records that a key custodian has left and, unless told not
// to, revokes every key they hold.
func keysOffboard(ctx context.Context, args []string, stdio IO) error {
	fs := flags("keys offboard", stdio)
	var nf nodeFlags
	nf.register(fs)
	reason := fs.String("reason", "", "why, or simply that they left (required; recorded)")
	keep := fs.Bool("keep-keys", false, "do not revoke the custodian's keys; detection still raises any use of them")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("custos keys offboard: give exactly one custodian (as custos keys list shows it)")
	}
	if strings.TrimSpace(*reason) == "" {
		return usagef("custos keys offboard: --reason is required")
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	custodian := fs.Arg(0)
	out, err := n.Custody.Offboard(ctx, custodian, actor(), *reason, !*keep)
	if err != nil && !out.Recorded {
		return err
	}
	if *asJSON {
		held := make([]string, len(out.Held))
		for i, k := range out.Held {
			held[i] = k.ID
		}
		if jerr := writeJSONOut(stdio.Stdout, struct {
			Custodian string   `json:"custodian"`
			Held      []string `json:"held"`
			Revoked   []string `json:"revoked"`
		}{custodian, held, append([]string{}, out.Revoked...)}); jerr != nil {
			return jerr
		}
		return err
	}
	fmt.Fprintf(stdio.Stdout, "offboarded %s: any token naming a key they hold now raises an alert\n", custodian)
	for _, k := range out.Held {
		switch {
		case slices.Contains(out.Revoked, k.ID):
			fmt.Fprintf(stdio.Stdout, "  %s revoked: unpublished, and every token it signed is refused\n", k.ID)
		case k.State == store.KeyRevoked:
			fmt.Fprintf(stdio.Stdout, "  %s was already revoked\n", k.ID)
		case !*keep:
			fmt.Fprintf(stdio.Stdout, "  %s NOT revoked (see the error below): custos keys revoke %s --reason ...\n", k.ID, k.ID)
		default:
			fmt.Fprintf(stdio.Stdout, "  %s kept (%s); revoke it with: custos keys revoke %s --reason ...\n", k.ID, k.State, k.ID)
		}
	}
	if len(out.Held) == 0 {
		fmt.Fprintln(stdio.Stdout, "  they hold no key")
	}
	return err
}

func keysImport(ctx context.Context, args []string, stdio IO) error {
	fs := flags("keys import", stdio)
	var nf nodeFlags
	nf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("custos keys import: give the PEM file of the private key (or - for standard input)")
	}
	var pem []byte
	var err error
	if fs.Arg(0) == "-" {
		pem, err = io.ReadAll(io.LimitReader(stdio.Stdin, 64<<10))
	} else {
		pem, err = os.ReadFile(fs.Arg(0))
	}
	if err != nil {
		return fmt.Errorf("reading the key: %w", err)
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	info, err := n.Custody.Import(ctx, pem, actor())
	clear(pem)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdio.Stdout, "imported %s (%s) as IMPORTED, EXPOSURE UNKNOWN: it signs now and is retired at the next rotation.\n", info.ID, info.Algorithm)
	fmt.Fprintln(stdio.Stdout, "Delete every other copy of this key. Tokens it signs outside custos have no receipt and are refused.")
	return nil
}

func clientsCmd(ctx context.Context, args []string, stdio IO) error {
	return subcommand(ctx, "clients", args, stdio, map[string]func(context.Context, []string, IO) error{
		"add": clientsAdd, "list": clientsList, "remove": clientsRemove,
	})
}

func clientsAdd(ctx context.Context, args []string, stdio IO) error {
	fs := flags("clients add", stdio)
	var nf nodeFlags
	nf.register(fs)
	var spec clients.Spec
	var redirects, scopes, auds, grants stringList
	fs.StringVar(&spec.ID, "id", "", "client id (required)")
	fs.StringVar(&spec.Name, "name", "", "display name shown on the sign-in page")
	fs.BoolVar(&spec.Public, "public", false, "a public client (browser or mobile app): no secret, PKCE only")
	fs.Var(&redirects, "redirect-uri", "redirect URI, matched exactly (repeatable)")
	fs.Var(&scopes, "scope", "scope the client may request (repeatable)")
	fs.Var(&auds, "audience", "resource server its access tokens may name; the first is the default (repeatable)")
	fs.Var(&grants, "grant", "authorization_code, refresh_token or client_credentials (repeatable)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if spec.ID == "" {
		return usagef("custos clients add: --id is required")
	}
	spec.RedirectURIs, spec.Scopes, spec.Audiences, spec.GrantTypes = redirects, scopes, auds, grants
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	c, secret, err := n.Clients.Add(ctx, spec, actor())
	if ie, ok := errors.AsType[*clients.InputError](err); ok {
		return usagef("custos clients add: --%s: %s", ie.Field, ie.Msg)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSONOut(stdio.Stdout, struct {
			clientJSON
			Secret string `json:"client_secret,omitempty"`
		}{toClientJSON(c), secret})
	}
	fmt.Fprintf(stdio.Stdout, "registered %s client %q\n", c.Kind, c.ID)
	if secret != "" {
		fmt.Fprintf(stdio.Stdout, "client secret (shown once, stored only as a hash): %s\n", secret)
	}
	return nil
}

type clientJSON struct {
	ID           string    `json:"client_id"`
	Name         string    `json:"name"`
	Kind         string    `json:"kind"`
	RedirectURIs []string  `json:"redirect_uris"`
	Scopes       []string  `json:"scopes"`
	Audiences    []string  `json:"audiences"`
	GrantTypes   []string  `json:"grant_types"`
	CreatedAt    time.Time `json:"created_at"`
}

func toClientJSON(c store.Client) clientJSON {
	nz := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return clientJSON{c.ID, c.Name, string(c.Kind), nz(c.RedirectURIs), nz(c.Scopes), nz(c.Audiences), nz(c.GrantTypes), c.CreatedAt}
}

func clientsList(ctx context.Context, args []string, stdio IO) error {
	fs := flags("clients list", stdio)
	var nf nodeFlags
	nf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	list, err := n.Clients.List(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		out := []clientJSON{}
		for _, c := range list {
			out = append(out, toClientJSON(c))
		}
		return writeJSONOut(stdio.Stdout, out)
	}
	tw := tabwriter.NewWriter(stdio.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tKIND\tGRANTS\tREDIRECT URIS\tSCOPES")
	for _, c := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ID, c.Kind, strings.Join(c.GrantTypes, ","),
			strings.Join(c.RedirectURIs, " "), strings.Join(c.Scopes, " "))
	}
	return tw.Flush()
}

func clientsRemove(ctx context.Context, args []string, stdio IO) error {
	fs := flags("clients remove", stdio)
	var nf nodeFlags
	nf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("custos clients remove: give exactly one client id")
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	if err := n.Clients.Remove(ctx, fs.Arg(0), actor()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no client %q", fs.Arg(0))
		}
		return err
	}
	fmt.Fprintf(stdio.Stdout, "removed client %q and revoked its tokens\n", fs.Arg(0))
	return nil
}

func accountsCmd(ctx context.Context, args []string, stdio IO) error {
	return subcommand(ctx, "accounts", args, stdio, map[string]func(context.Context, []string, IO) error{
		"add": accountsAdd, "disable": accountsDisable, "list": accountsList,
	})
}

func accountsAdd(ctx context.Context, args []string, stdio IO) error {
	fs := flags("accounts add", stdio)
	var nf nodeFlags
	nf.register(fs)
	login := fs.String("login", "", "login ID: e-mail address or phone number in E.164 form (required)")
	name := fs.String("name", "", "the customer's name (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *login == "" || *name == "" {
		return usagef("custos accounts add: --login and --name are required; the password is read from standard input")
	}
	password, err := readPassword(stdio.Stdin)
	if err != nil {
		return err
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	acc, err := n.Accounts.Register(ctx, *login, *name, password, actor())
	if ie, ok := errors.AsType[*accounts.InputError](err); ok {
		return usagef("custos accounts add: %s", ie.Error())
	}
	if errors.Is(err, accounts.ErrLoginIDTaken) {
		return fmt.Errorf("an account with login ID %q exists", *login)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdio.Stdout, "created account %s (%s)\n", acc.ID, acc.LoginID)
	return nil
}

// readPassword reads one line from r.
func readPassword(r io.Reader) (string, error) {
	sc := bufio.NewScanner(io.LimitReader(r, 4096))
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return "", err
		}
		return "", usagef("no password on standard input")
	}
	return strings.TrimRight(sc.Text(), "\r"), nil
}

func accountsDisable(ctx context.Context, args []string, stdio IO) error {
	fs := flags("accounts disable", stdio)
	var nf nodeFlags
	nf.register(fs)
	reason := fs.String("reason", "", "why (required; recorded)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || strings.TrimSpace(*reason) == "" {
		return usagef("custos accounts disable: give one account id and --reason")
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	if err := n.Accounts.Disable(ctx, fs.Arg(0), actor(), *reason); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no account %q", fs.Arg(0))
		}
		return err
	}
	fmt.Fprintf(stdio.Stdout, "disabled %s: its refresh tokens are revoked and its access tokens fail introspection\n", fs.Arg(0))
	return nil
}

func accountsList(ctx context.Context, args []string, stdio IO) error {
	fs := flags("accounts list", stdio)
	var nf nodeFlags
	nf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	after := fs.String("after", "", "list accounts after this id (paging)")
	limit := fs.Int("limit", 100, "at most this many accounts (1–1000)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *limit < 1 || *limit > 1000 {
		return usagef("custos accounts list: --limit must be between 1 and 1000")
	}
	n, err := nf.open(ctx, stdio)
	if err != nil {
		return err
	}
	defer n.Close()
	list, err := n.Accounts.List(ctx, *after, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		type accountJSON struct {
			ID         string    `json:"id"`
			LoginID    string    `json:"login_id"`
			Name       string    `json:"name"`
			CreatedAt  time.Time `json:"created_at"`
			DisabledAt time.Time `json:"disabled_at,omitzero"`
		}
		out := []accountJSON{}
		for _, a := range list {
			out = append(out, accountJSON{a.ID, a.LoginID, a.Name, a.CreatedAt, a.DisabledAt})
		}
		return writeJSONOut(stdio.Stdout, out)
	}
	tw := tabwriter.NewWriter(stdio.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tLOGIN\tNAME\tCREATED\tSTATUS")
	for _, a := range list {
		status := "active"
		if a.Disabled() {
			status = "disabled " + fmtTime(a.DisabledAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.ID, a.LoginID, a.Name, fmtTime(a.CreatedAt), status)
	}
	return tw.Flush()
}
