package ruled

import (
	"log/slog"
	"sync"
	"time"
)

// Watched runs build, which may build protovalidate's global validator,
// and logs stuck at error, with "waited" after, if build still runs after
// that long, and then done at warn, with "duration", once it returns after
// all, so that a start held by the build says why rather than hang
// without a word. The build walks protoregistry.GlobalFiles under its
// read lock and reads it again inside the walk: a file or type registered
// from another goroutine meanwhile waits for the write lock in between
// and blocks both for good. No lock of kit's can prevent it (the
// registration does not go through kit); the build takes a few ms. The
// timer is stopped however build ends, a panic included.
func Watched(logger *slog.Logger, after time.Duration, stuck, done string, args []any, build func() error) error {
	start := time.Now()
	var (
		mu            sync.Mutex
		ended, warned bool
	)
	timer := time.AfterFunc(after, func() {
		mu.Lock()
		defer mu.Unlock()
		if ended {
			return
		}
		warned = true
		logger.Error(stuck, append(args[:len(args):len(args)], "waited", after)...)
	})
	defer func() {
		timer.Stop()
		mu.Lock()
		defer mu.Unlock()
		ended = true
		if warned {
			logger.Warn(done, append(args[:len(args):len(args)], "duration", time.Since(start).Round(time.Millisecond))...)
		}
	}()
	return build()
}
