//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || windows)

package natsjs

import "os"

// On other systems the data directory is not locked (see lockDataDir).
func lockFile(*os.File) error   { return nil }
func unlockFile(*os.File) error { return nil }
func lockHeld(error) bool       { return false }
