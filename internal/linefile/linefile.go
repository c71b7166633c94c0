// Package linefile reads the line-based configuration files custos takes
// (guard policies, detection rules): UTF-8 text, one directive a line,
// words separated by spaces or tabs, "#" starting a comment at the start
// of a line or after a blank, indentation meaningful.
package linefile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Line is one line with words on it.
type Line struct {
	N        int      // line number, from 1
	Words    []string // the line's words, comment removed
	Indented bool     // the line starts with a blank
}

// Scan calls fn for each line of r that has words, in order, and bad for
// each problem: a file over maxBytes (which ends the scan), a line over
// maxLine bytes, invalid UTF-8, a control character.
func Scan(r io.Reader, maxLine int, maxBytes int64, fn func(Line), bad func(n int, msg string)) {
	cr := &countingReader{r: r}
	br := bufio.NewReaderSize(cr, maxLine+3) // a longest line and its CRLF
	for n := 1; ; n++ {
		text, long, err := readLine(br, maxLine)
		if cr.n > maxBytes {
			bad(n, fmt.Sprintf("the file is larger than %d bytes", maxBytes))
			return
		}
		switch {
		case err != nil && !errors.Is(err, io.EOF):
			bad(n, fmt.Sprintf("read: %v", err))
			return
		case long:
			bad(n, fmt.Sprintf("line longer than %d bytes", maxLine))
		default:
			if l, msg := split(n, text); msg != "" {
				bad(n, msg)
			} else if len(l.Words) > 0 {
				fn(l)
			}
		}
		if err != nil {
			return
		}
	}
}

func isBlank(r rune) bool { return r == ' ' || r == '\t' }

// split cuts a line's comment off and splits it into words.
func split(n int, text string) (Line, string) {
	if !utf8.ValidString(text) {
		return Line{}, "not valid UTF-8"
	}
	for i, r := range text {
		if r == '#' && (i == 0 || isBlank(rune(text[i-1]))) {
			text = text[:i]
			break
		}
	}
	if strings.ContainsFunc(text, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
		return Line{}, "control character"
	}
	words := strings.FieldsFunc(text, isBlank)
	return Line{N: n, Words: words, Indented: len(words) > 0 && isBlank(rune(text[0]))}, ""
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// readLine reads one line without its end (\n or \r\n). A line longer than
// maxLine is consumed and reported as long. At the end of the input it
// returns the last line, possibly empty, with io.EOF.
func readLine(br *bufio.Reader, maxLine int) (text string, long bool, err error) {
	b, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = br.ReadSlice('\n')
		}
		return "", true, err
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	return s, len(s) > maxLine, err
}
