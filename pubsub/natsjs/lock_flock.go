//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package natsjs

import (
	"errors"
	"os"
	"syscall"
)

func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

func unlockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// lockHeld reports whether err, from lockFile, means another holds the lock.
func lockHeld(err error) bool { return errors.Is(err, syscall.EWOULDBLOCK) }
