package health

import (
	"context"
	"time"
)

// watcher is one Watch stream waiting for its service's status to change.
type watcher struct {
	// woken holds at most one pending wake-up: changes that arrive while
	// the stream is busy sending coalesce, and the stream then sends the
	// latest status, so a slow client never blocks a status change.
	woken chan struct{}
}

func (w *watcher) wake() {
	select {
	case w.woken <- struct{}{}:
	default:
	}
}

// CloseWatches ends every Watch stream, each after it has sent the latest
// status, and makes later Watch calls end after their first message. Watch
// streams otherwise last as long as their clients, so a graceful HTTP
// shutdown would wait for them until its timeout: register it with
// http.Server.RegisterOnShutdown (after [Checker.Shutdown] has been called
// and the drain delay has passed). Check and List keep answering. Calling it
// again does nothing.
func (h *Checker) CloseWatches() {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.watchesClosed:
	default:
		close(h.watchesClosed)
	}
}

// WatchProbeInterval is how often a Watch stream runs its service's
// on-probe checks itself, so that it sees their failures and recoveries
// when nothing else probes (grpc-go's client-side health checking only
// watches). Concurrent probes share one run of each check.
const WatchProbeInterval = 5 * time.Second

// watch sends the status of svc at once (SERVICE_UNKNOWN if svc is unknown,
// after running its on-probe checks), then every change, never the same
// status twice in a row, until ctx is done, send fails or CloseWatches. It
// runs svc's on-probe checks every h.watchProbe. It starts no goroutine of
// its own: the stream's handler runs it.
func (h *Checker) watch(ctx context.Context, svc string, send func(servingStatus) error) error {
	w := &watcher{woken: make(chan struct{}, 1)}
	h.mu.Lock()
	set := h.watchers[svc]
	if set == nil {
		set = make(map[*watcher]struct{})
		h.watchers[svc] = set
	}
	set[w] = struct{}{}
	closed := h.watchesClosed
	_, known := h.services[svc]
	h.mu.Unlock()
	defer h.removeWatcher(svc, w)

	if known {
		h.probe(ctx, scope{service: svc})
	}
	ticker := time.NewTicker(h.watchProbe)
	defer ticker.Stop()
	last, closing := servingStatus(-1), false
	for {
		st, ok := h.status(svc)
		if !ok {
			st = statusServiceUnknown
		}
		if st != last {
			if err := send(st); err != nil {
				return err
			}
			last = st
		}
		if closing {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-closed:
			closing = true
		case <-w.woken:
		case <-ticker.C:
			// Also for a service unknown when the stream began: it may
			// have been registered since.
			h.probe(ctx, scope{service: svc})
		}
	}
}

func (h *Checker) removeWatcher(svc string, w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.watchers[svc], w)
	if len(h.watchers[svc]) == 0 {
		delete(h.watchers, svc)
	}
}
