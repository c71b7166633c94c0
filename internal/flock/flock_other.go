//go:build !unix

// Package flock takes exclusive locks on files, held by the process until
// released or until it exits.
package flock

import (
	"errors"
	"os"
)

// ErrHeld: another holder has the lock. It is never returned here.
var ErrHeld = errors.New("held by another process")

// Lock does not lock on this system: run one holder at a time.
func Lock(path string) (unlock func() error, err error) {
	return func() error { return nil }, nil
}

// TryLock does not lock on this system.
func TryLock(f *os.File) error { return nil }

// Supported reports whether locks are taken on this system.
const Supported = false
