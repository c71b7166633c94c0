package cli

import (
	"errors"
	"flag"
	"io"
	"slices"
	"testing"
)

// TestParseInterspersed: flags may come before or after positional
// arguments, as docs/operations.md writes them ("keys revoke KID --reason
// x"); "--" ends the flags; a key id that begins with a dash (one in 32
// do) is an argument, not a flag.
func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args       []string
		reason     string
		json       bool
		positional []string
		usage      bool
		help       bool
	}{
		{args: nil, positional: []string{}},
		{args: []string{"KID"}, positional: []string{"KID"}},
		{args: []string{"--reason", "x", "KID"}, reason: "x", positional: []string{"KID"}},
		{args: []string{"KID", "--reason", "x"}, reason: "x", positional: []string{"KID"}},
		{args: []string{"KID", "--reason=x", "--json"}, reason: "x", json: true, positional: []string{"KID"}},
		{args: []string{"A", "--json", "B", "--reason", "r", "C"}, reason: "r", json: true, positional: []string{"A", "B", "C"}},
		{args: []string{"--json", "--", "--reason", "x"}, json: true, positional: []string{"--reason", "x"}},
		{args: []string{"A", "--", "-B"}, positional: []string{"A", "-B"}},
		{args: []string{"-"}, positional: []string{"-"}},
		{args: []string{"-", "--json"}, json: true, positional: []string{"-"}},
		{args: []string{"-M0cO_Am4fkPAlPuxi6QDTedYxJ7X_-alh4eREDzUbQ"}, positional: []string{"-M0cO_Am4fkPAlPuxi6QDTedYxJ7X_-alh4eREDzUbQ"}},
		{args: []string{"--reason", "x", "-M0cO_Am4fkPAlPuxi6QDTedYxJ7X_-alh4eREDzUbQ", "--json"}, reason: "x", json: true, positional: []string{"-M0cO_Am4fkPAlPuxi6QDTedYxJ7X_-alh4eREDzUbQ"}},
		{args: []string{"A", "--json", "-M0cO_Am4fkPAlPuxi6QDTedYxJ7X_-alh4eREDzUbQ", "B", "-_M0cO_Am4fkPAlPuxi6QDTedYxJ7X_-alh4eREDzUb"}, json: true, positional: []string{"A", "-M0cO_Am4fkPAlPuxi6QDTedYxJ7X_-alh4eREDzUbQ", "B", "-_M0cO_Am4fkPAlPuxi6QDTedYxJ7X_-alh4eREDzUb"}},
		{args: []string{"KID", "--nope"}, usage: true},
		{args: []string{"-M0cO_Am4fkPAlPuxi6QDTedYxJ7X_-alh4eREDzUb"}, usage: true}, // 42 characters: not a key id
		{args: []string{"KID", "--reason"}, usage: true},
		{args: []string{"KID", "-h"}, help: true},
	}
	for _, tc := range tests {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		reason := fs.String("reason", "", "")
		asJSON := fs.Bool("json", false, "")
		err := parse(fs, tc.args)
		switch {
		case tc.help:
			if !errors.Is(err, flag.ErrHelp) {
				t.Errorf("parse(%q) = %v, want flag.ErrHelp", tc.args, err)
			}
			continue
		case tc.usage:
			if _, ok := errors.AsType[*UsageError](err); !ok {
				t.Errorf("parse(%q) = %v, want a *UsageError", tc.args, err)
			}
			continue
		case err != nil:
			t.Errorf("parse(%q): %v", tc.args, err)
			continue
		}
		if *reason != tc.reason || *asJSON != tc.json || !slices.Equal(fs.Args(), tc.positional) {
			t.Errorf("parse(%q): reason=%q json=%v args=%q, want %q %v %q", tc.args, *reason, *asJSON, fs.Args(), tc.reason, tc.json, tc.positional)
		}
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{flag.ErrHelp, 0},
		{usagef("bad"), 2},
		{errors.Join(errors.New("ctx"), usagef("bad")), 2},
		{errors.New("failed"), 1},
	}
	for _, tc := range tests {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
