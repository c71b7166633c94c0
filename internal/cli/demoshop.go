package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"

	"github.com/custos-dev/custos/internal/demoshop"
	"github.com/custos-dev/custos/internal/node"
)

// demoShopCmd serves the demo shop, or streams its customers as JSON lines.
func demoShopCmd(ctx context.Context, args []string, stdio IO) error {
	fs := flags("demo-shop", stdio)
	seed := fs.Uint64("seed", 1, "the seed every customer is generated from")
	listen := fs.String("listen", "127.0.0.1:9000", "listen address")
	export := fs.Int("export", 0, "write this many customers (ids cust_1 …) as JSON lines to standard output instead of serving")
	policy := fs.Bool("policy", false, "print the guard policy for the shop's routes and exit")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("custos demo-shop: unexpected arguments %q", fs.Args())
	}
	if *export < 0 {
		return usagef("custos demo-shop: --export must not be negative")
	}
	shop := demoshop.New(*seed)
	switch {
	case *policy:
		fmt.Fprint(stdio.Stdout, demoshop.Policy)
		return nil
	case *export > 0:
		return exportCustomers(ctx, shop, *export, stdio)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	fmt.Fprintf(stdio.Stdout, "demo shop (seed %d) on http://%s — put it behind the guard:\n", *seed, ln.Addr())
	fmt.Fprintf(stdio.Stdout, "  custos demo-shop --policy > shop.policy\n")
	fmt.Fprintf(stdio.Stdout, "  custos guard --upstream http://%s --policy shop.policy\n", ln.Addr())
	return node.ServeHTTP(ctx, ln, shop.Handler(), slog.New(slog.NewTextHandler(stdio.Stderr, nil)))
}

// progressFrom is the export size from which progress is shown.
const progressFrom = 10_000

// exportCustomers streams n customers, showing progress on standard error
// for large exports.
func exportCustomers(ctx context.Context, shop *demoshop.Shop, n int, stdio IO) error {
	w := bufio.NewWriterSize(stdio.Stdout, 1<<16)
	enc := json.NewEncoder(w)
	step := max(n/100, 1)
	for i := 1; i <= n; i++ {
		if err := enc.Encode(shop.Customer(fmt.Sprintf("cust_%d", i))); err != nil {
			return err
		}
		if n >= progressFrom && i%step == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			fmt.Fprintf(stdio.Stderr, "\r%3d%% %d/%d customers", i*100/n, i, n)
		}
	}
	if n >= progressFrom {
		fmt.Fprintln(stdio.Stderr)
	}
	return w.Flush()
}
