//go:build !unix

package state

import (
	"errors"
	"io"
	"io/fs"
	"strings"
)

// lockDir is a no-op where flock is not available: Pebble's LOCK file still
// keeps other processes out.
func lockDir(dir string) (io.Closer, error) { return nil, nil }

// isLockHeld reports whether err, from pebble.LockDirectory, says that the
// lock is held rather than that the LOCK file could not be created.
func isLockHeld(err error) bool {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return false
	}
	return strings.Contains(err.Error(), "lock held by current process") ||
		strings.Contains(err.Error(), "being used by another process")
}
