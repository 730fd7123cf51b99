package kit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/connectkit/connectkit/internal/telemetry"
)

// lifecycle runs the background components of one Run: it reports the first
// failure and lets shutdown cancel and wait for them all.
type lifecycle struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	failed chan error // receives the first failure, once
}

func newLifecycle(parent context.Context) *lifecycle {
	ctx, cancel := context.WithCancel(parent)
	return &lifecycle{ctx: ctx, cancel: cancel, failed: make(chan error, 1)}
}

func (l *lifecycle) fail(err error) {
	l.once.Do(func() { l.failed <- err })
}

// startActor runs fn; the caller holds s.mu.
func (s *Server) startActor(fn func(context.Context) error) {
	l := s.lifecycle
	l.wg.Go(func() {
		err := fn(l.ctx)
		if err != nil && l.ctx.Err() == nil {
			l.fail(fmt.Errorf("kit: background component: %w", err))
		}
	})
}

// Close ends a server that is never run. A program that calls other
// services without serving (a command, a batch job) makes one for
// [Server.HTTPClient] and [Server.ClientOptions], and calls Close before
// it exits: without it, the info lines of its last 5 ms (a short command's,
// all of them) and the spans not yet exported are lost.
//
// Close reports NOT_SERVING on the server's health, closes
// [Server.ShuttingDown]'s channel and the listeners of a [Server.Listen]
// call, waits for the calls in flight on the HTTP client (until ctx is
// done) and closes it, exports the spans still buffered (with at least a
// second, as Run's shutdown does) and writes the log lines kit's logger
// still holds. Once closed, the server cannot be run.
//
// When the calls on the HTTP client did not finish in time, Close returns
// an error saying so, and a later Close waits for them again, as
// [http.Server.Shutdown] may be called again. Once they have, a later Close
// does nothing and returns nil, as does a Close after Run returned, so that
// `defer srv.Close(ctx)` suits both kinds of program. A Close called while
// another still runs returns once that one has flushed the traces (or ctx
// is done, saying so). While Run runs, Close fails and changes nothing.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.running && !s.closed {
		s.mu.Unlock()
		return errors.New("kit: Close of a server that Run runs: Run shuts it down")
	}
	if s.closeDone { // by Close, or by Run's shutdown
		s.mu.Unlock()
		return nil
	}
	first := !s.closed
	s.closed = true
	var errs []error
	if first {
		s.flushed = make(chan struct{})
		s.health.Shutdown()
		s.draining.Store(true)
		close(s.stopping)
		for _, ln := range []net.Listener{s.ln, s.adminLn} {
			if ln != nil {
				if err := ln.Close(); err != nil {
					errs = append(errs, fmt.Errorf("kit: closing %s: %w", ln.Addr(), err))
				}
			}
		}
	}
	s.mu.Unlock()
	_, clientErr := s.closeHTTPClient(ctx)
	unfinished := clientErr != nil // a later Close does it again
	if unfinished {
		errs = append(errs, clientErr)
	}
	if first {
		// Once: OpenTelemetry's provider shuts down once, even when its
		// context was done before it exported anything.
		tctx, cancel := atLeastGrace(ctx)
		if err := s.telemetry.Shutdown(tctx); err != nil {
			errs = append(errs, fmt.Errorf("kit: flushing traces: %w", err))
		}
		cancel()
		close(s.flushed)
	} else {
		// The first Close flushes them, and may still: a program may exit
		// as soon as this one returns.
		select {
		case <-s.flushed:
		case <-ctx.Done():
			select {
			case <-s.flushed: // as ctx ended
			default:
				unfinished = true
				errs = append(errs, fmt.Errorf("kit: traces still being flushed by an earlier Close: %w", ctx.Err()))
			}
		}
	}
	flushLogger(s.logger)
	if !unfinished {
		s.mu.Lock()
		s.closeDone = true
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

// shutdown runs the shutdown sequence, logging each step with its duration
// (and telling systemd of it, see notifier), and returns cause joined with
// whatever went wrong on the way. reason says what began it.
func (s *Server) shutdown(cause error, reason string) error {
	begin := time.Now()
	errs := []error{cause}
	// Readiness and gRPC health (Check and Watch) say NOT_SERVING first,
	// before any draining, so that load balancers stop sending calls while
	// the server still takes them.
	s.health.Shutdown()
	s.draining.Store(true) // and HTTP/1.x clients leave their connections
	drain := s.cfg.DrainDelay > 0 && cause == nil
	s.notify.stoppingFor(reason, s.shutdownBound(drain))
	s.logger.Info("reported NOT_SERVING")
	if drain {
		s.notify.stage(fmt.Sprintf("draining: serving %s more so that load balancers notice", s.cfg.DrainDelay), s.cfg.DrainDelay)
		s.logger.Info("draining: waiting for load balancers to notice", "drain_delay", s.cfg.DrainDelay)
		time.Sleep(s.cfg.DrainDelay)
	}

	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()

	step := time.Now()
	close(s.stopping)
	stopReporting := s.notify.reportCalls(s.cfg.ShutdownTimeout)
	stopClosing := s.fresh.closeSilentUntilStopped()
	shutErr := s.http.Shutdown(ctx)
	stopClosing()
	if err := shutErr; err != nil {
		errs = append(errs, fmt.Errorf("kit: in-flight calls did not finish within %s; cut them: %w", s.cfg.ShutdownTimeout, err))
		if !s.cutCallsAndClose() {
			errs = append(errs, fmt.Errorf("kit: handlers still running %s after their calls were cut and their connections closed (they ignore their context)", s.cutGrace))
		}
	} else if !wait(ctx, &s.handlers) {
		// net/http's Shutdown waits for connections, not handlers: its
		// HTTP/2 server forgets a stream that the client reset while the
		// stream's handler still runs.
		errs = append(errs, fmt.Errorf("kit: handlers of calls their clients cancelled did not return within %s: %w", s.cfg.ShutdownTimeout, ctx.Err()))
	}
	stopReporting()
	s.logger.Info("stopped serving calls", "duration", time.Since(step))

	// Background components get a timeout of their own, from their
	// cancellation: calls that used up theirs must not cut short a
	// subscriber's drain (handlers finishing, their acks sent).
	step = time.Now()
	s.notify.stage(fmt.Sprintf("stopping background components (up to %s)", s.cfg.ShutdownTimeout), s.cfg.ShutdownTimeout)
	s.lifecycle.cancel()
	ctx, cancel = context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if !wait(ctx, &s.lifecycle.wg) {
		errs = append(errs, fmt.Errorf("kit: background components did not stop within %s: %w", s.cfg.ShutdownTimeout, ctx.Err()))
	}
	s.logger.Info("stopped background components", "duration", time.Since(step))

	// The HTTP client (its last calls were the background components'),
	// then trace flushing and the admin listener get what remains of that,
	// and at least closeGrace each.
	ctx, cancel = atLeastGrace(ctx)
	defer cancel()
	if d, ok := ctx.Deadline(); ok {
		// Each of the three that follow gets at least closeGrace.
		s.notify.stage("closing the HTTP client, flushing traces, closing the admin listener", addSat(time.Until(d), 3*closeGrace))
	}
	step = time.Now()
	if made, err := s.closeHTTPClient(ctx); err != nil {
		errs = append(errs, err)
	} else if made {
		s.logger.Info("closed the HTTP client", "duration", time.Since(step))
	}
	ctx, cancel = atLeastGrace(ctx)
	defer cancel()
	step = time.Now()
	unsent := s.telemetry.Unsent()
	if err := s.telemetry.Shutdown(ctx); err != nil {
		// The flush outlasted ctx; the batch span processor's export goes
		// on under its own timeout, so what it loses is not known yet.
		errs = append(errs, fmt.Errorf("kit: flushing traces: %w", err))
		s.logger.Warn("traces not flushed", "duration", time.Since(step), "error", err)
	} else if !s.logUnflushed(unsent, time.Since(step)) {
		s.logger.Info("flushed traces", "duration", time.Since(step))
	}
	if s.admin != nil {
		// Last, so that metrics and probes answered during the drain.
		step = time.Now()
		stopClosing := s.freshAdmin.closeSilentUntilStopped()
		if err := s.admin.Shutdown(ctx); err != nil {
			_ = s.admin.Close()
		}
		stopClosing()
		s.logger.Info("closed the admin listener", "duration", time.Since(step))
	}

	err := errors.Join(errs...)
	s.notify.complete(err == nil)
	s.logger.Info("shutdown complete", "duration", time.Since(begin), "clean", err == nil)
	flushLogger(s.logger) // the program may exit as soon as Run returns
	return err
}

// shutdownBound is the longest a shutdown takes (README "Shutdown, step
// by step"): the drain delay when drain is set, the calls' timeout and a
// closeGrace to cut them, the background components' timeout, a closeGrace
// for the HTTP client's calls and one for the trace flush; the longest
// time.Duration when that is longer (a timeout meant as "forever").
func (s *Server) shutdownBound(drain bool) time.Duration {
	d := addSat(addSat(s.cfg.ShutdownTimeout, s.cfg.ShutdownTimeout), 3*closeGrace)
	if drain {
		d = addSat(d, s.cfg.DrainDelay)
	}
	return d
}

// atLeastGrace returns ctx, or a context of closeGrace when ctx is done or
// has less time left. A ctx without a deadline is returned as it is: its
// time is not short.
func atLeastGrace(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ctx.Err() != nil || ok && time.Until(d) < closeGrace {
		return context.WithTimeout(context.Background(), closeGrace)
	}
	return ctx, func() {}
}

// cutCallsAndClose ends the calls still running at the shutdown timeout,
// within closeGrace (s.cutGrace), and reports whether their handlers all returned. It
// cancels their contexts (with errCallsCut), so that handlers that watch
// them return and their clients get Unavailable; then, once those handlers
// have returned, it lets the connections send what they wrote and close
// (half of closeGrace each). Connections still open then, and those of
// handlers that ignore their context, are closed at once, which ends a
// Send or Receive stuck on its client; their handlers get what remains of
// closeGrace to return, and to log and count the calls.
func (s *Server) cutCallsAndClose() bool {
	s.cutCalls(errCallsCut)
	ctx, cancel := context.WithTimeout(context.Background(), s.cutGrace)
	defer cancel()
	half, cancelHalf := context.WithTimeout(ctx, s.cutGrace/2)
	defer cancelHalf()
	if wait(half, &s.handlers) {
		// The connections are shutting down already: each closes once
		// it has sent its last response.
		if s.http.Shutdown(ctx) == nil {
			return true
		}
	}
	_ = s.closeConns()
	return wait(ctx, &s.handlers)
}

// closeGrace is how long shutdown waits for handlers to return once it has
// closed their connections, after ShutdownTimeout, and the least time trace
// flushing and the admin listener get.
const closeGrace = time.Second

// wait waits for wg until ctx is done, and reports whether wg's count
// reached zero.
func wait(ctx context.Context, wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		select {
		case <-done: // as the time ran out
			return true
		default:
			return false
		}
	}
}

// logUnflushed logs "traces not flushed" at warn for each exporter that
// failed to send spans since before was taken, with how many, and reports
// whether it logged any. Each failed batch has its error line; this one
// says the flush did not do what "flushed traces" would claim. One line
// per exporter: each sends its own copy of every span, so a span that two
// exporters failed to send is counted once in each line, not twice in one.
func (s *Server) logUnflushed(before []telemetry.Unsent, took time.Duration) bool {
	logged := false
	for i, after := range s.telemetry.Unsent() {
		if lost := after.Spans - before[i].Spans; lost > 0 {
			s.logger.Warn("traces not flushed", "duration", took, "exporter", after.Exporter, "spans", lost)
			logged = true
		}
	}
	return logged
}
