//go:build unix

// Package flock takes exclusive locks on files, held by the process until
// released or until it exits.
package flock

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrHeld: another holder, in this process or another, has the lock.
var ErrHeld = errors.New("held by another process")

// Lock takes an exclusive lock on path (created 0600 if need be) without
// waiting. It fails with ErrHeld if another holder has it.
func Lock(path string) (unlock func() error, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", path, ErrHeld)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f.Close, nil
}

// TryLock takes an exclusive lock on the open file f without waiting,
// held until f is closed. It fails with ErrHeld if another holder has it;
// two opens of one file in the same process are two holders.
func TryLock(f *os.File) error {
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("%s: %w", f.Name(), ErrHeld)
		}
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return nil
}

// Supported reports whether locks are taken on this system.
const Supported = true
