//go:build !linux

package sqlite

import (
	"errors"
	"os"
)

// punchHole is not available here; the caller writes zeros instead.
func punchHole(f *os.File, off, n int64) error {
	return errors.New("punching holes is not supported")
}
