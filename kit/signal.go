package kit

import (
	"os"
	"os/signal"
	"syscall"
	"time"
)

// secondSignalGrace is how long after the first signal a SIGTERM is taken
// for that signal delivered again rather than for a second: GNU timeout,
// for one, signals its command and then the command's process group, so
// the process gets SIGTERM twice within microseconds. A SIGINT gets no
// grace: a terminal sends one a ^C, and a developer who presses ^C again,
// however soon, wants the process gone (as docker compose and
// controller-runtime's signal handler do at a second ^C).
const secondSignalGrace = time.Second

// exitOnSecondSignal takes the signals of sigs during the shutdown. Once a
// signal came (signalled: the one that began the shutdown), a SIGINT, or a
// SIGTERM past the first's [secondSignalGrace], ends the process at once,
// as the signal's default action does, once it has logged why at error and
// written the log lines still buffered: otherwise the logs of a process
// killed so stop in mid-shutdown, with nothing to tell a second signal
// from a crash. The first signal of a shutdown that a failure or Run's
// context began is only logged: it asks for what is under way already (a
// Kubernetes pod deleted once its component failed gets one SIGTERM), and
// killing the process would drop the calls the drain protects. The signal
// is raised again once its handling is reset to the default
// (signal.Reset), so that the process ends by it (exit status 143 for
// SIGTERM, as a supervisor expects): also when func main listens to it
// too, as it does when it passes Run the context of its own
// signal.NotifyContext, whose channel would swallow the signal (that
// context is done already) and leave the shutdown running after kit
// logged that it exits. The returned func stops, for a shutdown that
// finished.
func (s *Server) exitOnSecondSignal(sigs <-chan os.Signal, signalled bool) (stop func()) {
	first := time.Now() // when the first signal came, or the shutdown began
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-sigs:
				switch {
				case !signalled:
					signalled, first = true, time.Now()
					s.logger.Info("signal received during shutdown; already draining", "signal", sig.String())
					continue
				case sig == syscall.SIGTERM && time.Since(first) < secondSignalGrace:
					s.logger.Debug("signal ignored: the first came less than a second ago", "signal", sig.String())
					continue
				}
				s.logger.Error("second signal received: exiting at once, without finishing the shutdown", "signal", sig.String())
				flushLogger(s.logger)
				signal.Reset(sig)
				if p, err := os.FindProcess(os.Getpid()); err == nil {
					_ = p.Signal(sig)
				}
			case <-done:
			}
			return
		}
	}()
	return func() { close(done) }
}
