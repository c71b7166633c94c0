package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

func tokenCmd(ctx context.Context, args []string, stdio IO) error {
	return subcommand(ctx, "token", args, stdio, map[string]func(context.Context, []string, IO) error{
		"inspect": tokenInspect,
	})
}

// tokenInspect decodes a JWT without trusting it: it shows the header and
// claims as written, and says plainly that nothing was verified.
func tokenInspect(_ context.Context, args []string, stdio IO) error {
	fs := flags("token inspect", stdio)
	if err := parse(fs, args); err != nil {
		return err
	}
	var tok string
	switch {
	case fs.NArg() > 1:
		return usagef("custos token inspect: give one token, or none to read it from standard input")
	case fs.NArg() == 1 && fs.Arg(0) != "-":
		tok = fs.Arg(0)
	default:
		b, err := io.ReadAll(io.LimitReader(stdio.Stdin, 64<<10))
		if err != nil {
			return err
		}
		tok = string(b)
	}
	tok = strings.TrimSpace(tok)
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return fmt.Errorf("not a compact JWS: %d segments, want 3", len(parts))
	}
	var out bytes.Buffer
	fmt.Fprintln(&out, "UNVERIFIED: this shows what the token claims, not whether custos issued it.")
	fmt.Fprintln(&out, "Use introspection (or the verify package) to check it.")
	var claims map[string]any
	for i, name := range []string{"header", "claims"} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return fmt.Errorf("%s: not base64url: %v", name, err)
		}
		var v map[string]any
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			return fmt.Errorf("%s: not a JSON object: %v", name, err)
		}
		pretty, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintf(&out, "\n%s:\n%s\n", name, pretty)
		if name == "claims" {
			claims = v
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return fmt.Errorf("signature: not base64url: %v", err)
	}
	fmt.Fprintf(&out, "\nsignature: %d bytes\n", len(sig))
	for _, k := range []string{"iat", "nbf", "exp", "auth_time"} {
		if n, ok := claims[k].(json.Number); ok {
			if secs, err := n.Int64(); err == nil {
				fmt.Fprintf(&out, "%-9s %s\n", k+":", time.Unix(secs, 0).UTC().Format(time.RFC3339))
			}
		}
	}
	_, err = stdio.Stdout.Write(out.Bytes())
	return err
}
