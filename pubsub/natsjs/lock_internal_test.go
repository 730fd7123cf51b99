package natsjs

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// TestLockFailureIsNotAHolder: a lock that fails for another reason than
// another holder (ENOLCK on NFS without its lock daemon, a file system
// without locks) is reported as it is, not as a directory in use by
// another server, which would send the user looking for one.
func TestLockFailureIsNotAHolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	noLocks := errors.New("no locks available")
	unlock, err := lockDataDir(dir, func(*os.File) error { return noLocks })
	if err == nil {
		unlock()
		t.Fatal("lockDataDir succeeded though the lock failed")
	}
	if !errors.Is(err, noLocks) || strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q; want one that names %s and wraps the lock's error, not one saying it is in use", err, dir)
	}
}
