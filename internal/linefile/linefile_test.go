package linefile

import (
	"fmt"
	"strings"
	"testing"
)

func TestScan(t *testing.T) {
	in := "first line\n\t  indented  words\t# a comment\n# only a comment\n\nnot#comment but # this is\r\nbad \x01 char\n\xff\nlast"
	var got []string
	Scan(strings.NewReader(in), 64, 1<<10, func(l Line) {
		got = append(got, fmt.Sprintf("%d %v %q", l.N, l.Indented, l.Words))
	}, func(n int, msg string) {
		got = append(got, fmt.Sprintf("%d error: %s", n, msg))
	})
	want := []string{
		`1 false ["first" "line"]`,
		`2 true ["indented" "words"]`,
		`5 false ["not#comment" "but"]`,
		`6 error: control character`,
		`7 error: not valid UTF-8`,
		`8 false ["last"]`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestScanLimits(t *testing.T) {
	var errs []string
	bad := func(n int, msg string) { errs = append(errs, fmt.Sprintf("%d %s", n, msg)) }
	Scan(strings.NewReader("ok\n"+strings.Repeat("x", 100)+"\nok\n"), 64, 1<<10, func(Line) {}, bad)
	if len(errs) != 1 || errs[0] != "2 line longer than 64 bytes" {
		t.Fatalf("long line: %q", errs)
	}
	errs = nil
	lines := 0
	Scan(strings.NewReader(strings.Repeat("word\n", 1000)), 64, 100, func(Line) { lines++ }, bad)
	if len(errs) != 1 || !strings.Contains(errs[0], "larger than 100 bytes") || lines > 20 {
		t.Fatalf("large file: %q after %d lines", errs, lines)
	}
}
