// Package interop checks, from the outside, that a peer can read custos's
// audit log: tessera v1.0.4's tlog-tiles client follows a running
// `custos serve` over HTTP, proves consistency between the checkpoints it
// sees and inclusion of logged events, and notices a tampered tile.
//
// It is a separate module so that tessera and its dependencies stay out of
// custos's own go.mod and binary. Run it with
//
//	cd interop/tessera && go test ./...
//
// The package holds no code; the test is the whole of it.
package interop
