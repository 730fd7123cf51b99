package health

import (
	"context"
	"errors"
	"time"
)

// Run runs the background checks (those with an Interval), each at once and
// then every Interval, including checks added while it runs, until ctx is
// done; then it waits for the runs in progress to notice ctx and returns nil.
// Results of runs cut short by ctx are discarded. Background checks stay
// pending, so failing, until Run has run them: run it for the server's
// whole life, e.g. with kit's Server.Go. It returns an error if called more
// than once.
func (h *Checker) Run(ctx context.Context) error {
	h.mu.Lock()
	if h.runCtx != nil {
		h.mu.Unlock()
		return errors.New("health: Run called more than once")
	}
	h.runCtx = ctx
	h.running = true
	for _, c := range h.checks {
		if c.background() {
			h.startLoopLocked(c)
		}
	}
	h.mu.Unlock()

	<-ctx.Done()
	// AddCheck starts loops under h.mu while running is set, so none can be
	// added behind Wait's back.
	h.mu.Lock()
	h.running = false
	h.mu.Unlock()
	h.runWG.Wait()
	return nil
}

func (h *Checker) startLoopLocked(c *check) {
	h.runWG.Add(1)
	go h.loop(h.runCtx, c)
}

// loop runs c every c.Interval until ctx is done. A run that outlasts the
// interval delays the next one rather than overlapping it.
func (h *Checker) loop(ctx context.Context, c *check) {
	defer h.runWG.Done()
	ticker := time.NewTicker(c.Interval)
	defer ticker.Stop()
	for {
		h.runCheck(ctx, c, &flight{done: make(chan struct{})})
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
