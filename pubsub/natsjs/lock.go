package natsjs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// lockName is the file in the data directory that an embedded server
// holds locked while it runs.
const lockName = "natsjs.lock"

// lockDataDir locks dir for one embedded server until unlock is called
// (once or more, from any goroutine).
// nats-server does not lock its store, and two servers writing one store
// corrupt it ("could not locate msg block"): a second instance started
// from the same working directory, whose NATS_DATA_DIR defaults to the same
// "data/nats", then fails to start with an error that names the directory
// instead. The lock is the operating system's (flock, LockFileEx), so a
// crashed process holds it no longer. lock is lockFile, or a test's.
//
// Only a lock that another holds means another server: any other failure
// to lock (a file system without locks, say: ENOLCK on NFS without its
// lock daemon) is reported as it is.
func lockDataDir(dir string, lock func(*os.File) error) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("natsjs: the data directory %s (NATS_DATA_DIR): %w", dir, err)
	}
	name := filepath.Join(dir, lockName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("natsjs: the data directory %s (NATS_DATA_DIR): %w", dir, err)
	}
	if err := lock(f); err != nil {
		if !lockHeld(err) {
			_ = f.Close()
			return nil, fmt.Errorf("natsjs: failed to lock the data directory %s (NATS_DATA_DIR): %w", dir, err)
		}
		holder := ""
		if b, rerr := os.ReadFile(name); rerr == nil && len(b) > 0 {
			holder = " (" + strings.TrimSpace(string(b)) + ")"
		}
		_ = f.Close()
		return nil, fmt.Errorf("natsjs: the data directory %s (NATS_DATA_DIR) is in use by another embedded NATS server%s: two servers must not share a store; give each instance a NATS_DATA_DIR of its own, or a NATS_URL of one NATS server they share", dir, holder)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = fmt.Fprintf(f, "pid %d\n", os.Getpid())
	}
	// Once: Close, safe for concurrent use, may unlock from two
	// goroutines at once, and a second unlock would read f's descriptor
	// while the first closes it (a number another file may have reused).
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = unlockFile(f)
			_ = f.Close()
		})
	}, nil
}
