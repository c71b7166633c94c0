// Package durable makes file-system changes survive a crash.
package durable

import "os"

// SyncDir makes the entries of directory dir durable: a file created in,
// renamed into or removed from it stays so after a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
