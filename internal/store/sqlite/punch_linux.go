package sqlite

import (
	"os"

	"golang.org/x/sys/unix"
)

// punchHole deallocates n bytes of f at off; they read as zeros after.
func punchHole(f *os.File, off, n int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}
