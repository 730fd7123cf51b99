package main

import (
	"sync"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
)

// watcherBuffer is how many changes a watcher may fall behind before it is
// dropped: a slow watcher must not slow down writes.
const watcherBuffer = 256

// hub fans profile changes out to WatchProfiles streams.
type hub struct {
	mu       sync.Mutex
	watchers map[*watcher]struct{}
}

// watcher is one stream's subscription. dropped is closed when the watcher
// fell too far behind and lost changes.
type watcher struct {
	changes chan *examplev1.ProfileChanged
	dropped chan struct{}
}

func newHub() *hub {
	return &hub{watchers: make(map[*watcher]struct{})}
}

func (h *hub) watch() *watcher {
	w := &watcher{changes: make(chan *examplev1.ProfileChanged, watcherBuffer), dropped: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.watchers[w] = struct{}{}
	return w
}

func (h *hub) unwatch(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.watchers, w)
}

// publish hands change to every watcher without blocking; a watcher whose
// buffer is full is dropped.
func (h *hub) publish(change *examplev1.ProfileChanged) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
		select {
		case w.changes <- change:
		default:
			delete(h.watchers, w)
			close(w.dropped)
		}
	}
}
