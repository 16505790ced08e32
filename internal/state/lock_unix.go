//go:build unix

package state

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// lockFile is the file in the state directory that Open flocks.
const lockFile = "sluice.lock"

// lockDir takes an exclusive, non-blocking flock on dir/sluice.lock. Unlike
// fcntl locks (which Pebble uses, and which belong to the process), flock
// locks belong to the open file, so a second Open of the same directory in
// this process fails too. The kernel drops the lock when the process dies,
// so a crash never leaves the directory locked.
func lockDir(dir string) (io.Closer, error) {
	name := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("state: open lock file: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, lockedError(dir, err)
		}
		return nil, fmt.Errorf("state: lock %s: %w", name, err)
	}
	return f, nil
}

// isLockHeld reports whether err, from pebble.LockDirectory, says that the
// lock is held rather than that the LOCK file could not be created. fcntl
// reports a held lock as EAGAIN or EACCES, MemFS as EAGAIN, and Pebble a lock
// held by this process under the same name with a plain error.
func isLockHeld(err error) bool {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return false // creating the LOCK file failed
	}
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) ||
		strings.Contains(err.Error(), "lock held by current process")
}
