package kit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/connectkit/connectkit/health"
)

// notifier speaks systemd's notify protocol (sd_notify(3)) for a server
// run by a unit of Type=notify: READY=1 once the server serves and its
// readiness is SERVING, WATCHDOG=1 while its liveness holds, STOPPING=1
// and a STATUS= line for each stage of the shutdown, with the
// EXTEND_TIMEOUT_USEC that stage may take. A nil *notifier (NOTIFY_SOCKET
// unset, or Config.NoSystemdNotify) does nothing, at the cost of a nil
// check. Each message is one datagram to NOTIFY_SOCKET (a path, or an
// abstract name "@…"), dialled for it, as libsystemd's sd_notify sends
// it; unlike it, a send waits for room in the socket's queue for a
// while only (see [notifier.write]).
type notifier struct {
	logger   *slog.Logger
	health   *health.Checker
	socket   *net.UnixAddr // NOTIFY_SOCKET
	watchdog time.Duration // WATCHDOG_USEC for this process; 0: no watchdog
	calls    atomic.Int64  // handlers running on the main listener

	failing atomic.Bool // the last send failed, and was logged

	mu       sync.Mutex
	stopping bool          // STOPPING=1 sent: READY=1 no longer is
	begun    chan struct{} // closed with stopping set
	done     chan struct{} // closed when Run's shutdown is complete
}

// counter returns what counts the calls in flight, nil without a notifier:
// a server that tells no one pays nothing to count them.
func (n *notifier) counter() *atomic.Int64 {
	if n == nil {
		return nil
	}
	return &n.calls
}

// newNotifier returns the notifier of a server configured with cfg, nil
// when there is no one to notify.
func newNotifier(cfg Config, logger *slog.Logger, checker *health.Checker) *notifier {
	if cfg.NoSystemdNotify || os.Getenv("NOTIFY_SOCKET") == "" {
		return nil
	}
	n := &notifier{logger: logger, health: checker, begun: make(chan struct{}), done: make(chan struct{}),
		socket: &net.UnixAddr{Name: os.Getenv("NOTIFY_SOCKET"), Net: "unixgram"}}
	// The interval for this process: zero when WATCHDOG_PID names another
	// one (a child that inherited the variables, say).
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		logger.Warn("systemd watchdog: WATCHDOG_USEC or WATCHDOG_PID does not parse; not pinging", "error", err)
	}
	n.watchdog = wd
	return n
}

// send sends state, the lines of one message, and returns the error that
// kept it from being sent. A failure is logged once, at warn, until a send
// succeeds again: systemd may be restarting, and the server serves on
// whatever becomes of its messages.
func (n *notifier) send(state ...string) error {
	err := n.write(strings.Join(state, "\n"))
	if was := n.failing.Swap(err != nil); err != nil && !was {
		n.logger.Warn("systemd notify: cannot send to NOTIFY_SOCKET; going on without", "socket", n.socket.Name, "error", err)
	}
	return err
}

// Bounds of a send's wait for room in NOTIFY_SOCKET's queue: systemd reads
// it at once, and a queue that stays full for sendTimeout means a
// supervisor that stopped reading (or a socket no one reads), for which
// the shutdown must not wait. While sends fail, the next ones wait
// failingSendTimeout only, so that the shutdown's half dozen messages
// add well under TimeoutStopSec's margin to it.
const (
	sendTimeout        = time.Second
	failingSendTimeout = 100 * time.Millisecond
)

// write sends msg as one datagram, as go-systemd's daemon.SdNotify does,
// but with a deadline: SdNotify's write has none, and waits for good while
// the socket's queue is full, holding up the shutdown (and READY=1, under
// n.mu, its STOPPING=1).
func (n *notifier) write(msg string) error {
	wait := sendTimeout
	if n.failing.Load() {
		wait = failingSendTimeout
	}
	conn, err := net.DialUnix("unixgram", nil, n.socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetWriteDeadline(time.Now().Add(wait)); err != nil {
		return err
	}
	_, err = conn.Write([]byte(msg))
	return err
}

// start sends READY=1 once the server is ready, and runs the watchdog; both
// end with the shutdown. Run calls it once its listeners serve and its
// background components have started.
func (n *notifier) start(addrs string) {
	if n == nil {
		return
	}
	go n.awaitReady(addrs)
	if n.watchdog > 0 {
		go n.pingWatchdog()
	}
}

// readyPollMax caps the time between the readiness probes awaitReady runs:
// a check that passes is seen within it.
const readyPollMax = time.Second

// awaitReady probes readiness, at once and then at growing intervals up to
// readyPollMax, until the whole server is SERVING, and sends READY=1 then.
// Until then, STATUS= names the critical checks that hold it back (the
// unit stays "activating": systemd's TimeoutStartSec bounds the wait). A
// READY=1 that found the socket's queue full until its send gave up is
// sent again after the next probe: without it, systemd would fail the
// start (one that cannot be sent at all, no one listening, is not). A
// shutdown begun first ends the wait and READY=1 is never sent.
func (n *notifier) awaitReady(addrs string) {
	var shown []string
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, readyPollMax) {
		ctx, cancel := context.WithTimeout(context.Background(), readyPollMax)
		serving, failing := n.health.Ready(ctx)
		cancel()
		n.mu.Lock()
		if n.stopping {
			n.mu.Unlock()
			return
		}
		if serving {
			// Under the lock: STOPPING=1 never comes before it.
			err := n.send("READY=1", "STATUS=serving on "+addrs)
			n.mu.Unlock()
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
		} else {
			n.mu.Unlock()
		}
		if !serving && !slices.Equal(failing, shown) {
			shown = failing
			n.send("STATUS=starting: waiting for readiness checks: " + strings.Join(failing, ", "))
		}
		select {
		case <-n.begun:
			return
		case <-time.After(wait):
		}
	}
}

// pingWatchdog sends WATCHDOG=1 every half WatchdogSec while the server is
// live, until Run's shutdown is complete. Live means what /healthz answers
// 200 for: no critical liveness check fails (by default there is none, and
// the pings say that the process still schedules its goroutines and timers).
// Readiness plays no part, as for a liveness probe: systemd restarts a
// service whose pings stop, and a restart cannot bring back a database. A
// liveness check that fails stops the pings, says so in STATUS= and in the
// log, and systemd kills the process once WatchdogSec has passed without
// one; the pings go on through the shutdown, which liveness outlasts.
func (n *notifier) pingWatchdog() {
	every := n.watchdog / 2
	tick := time.NewTicker(every)
	defer tick.Stop()
	var failed []string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), every)
		live, failing := n.health.Live(ctx)
		cancel()
		switch {
		case live && failed != nil:
			n.logger.Info("systemd watchdog: liveness recovered; pinging again")
			n.send("WATCHDOG=1", "STATUS=live again: watchdog pinged")
		case live:
			n.send("WATCHDOG=1")
		case !slices.Equal(failing, failed):
			n.logger.Warn("systemd watchdog: liveness check failing; not pinging, so systemd will restart the service",
				"checks", failing, "watchdog", n.watchdog)
			n.send("STATUS=liveness check failing: " + strings.Join(failing, ", ") + "; watchdog not pinged")
		}
		failed = nil
		if !live {
			failed = failing
		}
		select {
		case <-n.done:
			return
		case <-tick.C:
		}
	}
}

// extendMargin is added to what each stage of the shutdown may take in its
// EXTEND_TIMEOUT_USEC: the stage's own bound is kit's, and its next
// message needs a moment more.
const extendMargin = 5 * time.Second

// stoppingFor sends STOPPING=1 as the shutdown begins (reason says why),
// with what the whole shutdown may take (bound), and ends the wait for
// readiness.
func (n *notifier) stoppingFor(reason string, bound time.Duration) {
	if n == nil {
		return
	}
	n.mu.Lock()
	n.stopping = true
	close(n.begun)
	n.send("STOPPING=1", "STATUS=shutting down ("+reason+"): reported NOT_SERVING", extend(bound))
	n.mu.Unlock()
}

// stage sends status and the time the stage may take.
func (n *notifier) stage(status string, bound time.Duration) {
	if n != nil {
		n.send("STATUS="+status, extend(bound))
	}
}

// reportCalls sends, while the shutdown waits for the calls in flight,
// their number each time it changes (checked every callsReportEvery); the
// returned func stops it.
func (n *notifier) reportCalls(bound time.Duration) (stop func()) {
	if n == nil {
		return func() {}
	}
	status := func(calls int64) string {
		return fmt.Sprintf("STATUS=stopping: waiting for the calls in flight: %d (up to %s)", calls, bound)
	}
	shown := n.calls.Load()
	n.send(status(shown), extend(addSat(bound, closeGrace)))
	quit, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(callsReportEvery)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				if calls := n.calls.Load(); calls != shown {
					shown = calls
					n.send(status(calls))
				}
			}
		}
	}()
	return func() { close(quit); <-exited }
}

// callsReportEvery is how often the shutdown's STATUS= line counts the
// calls still in flight.
const callsReportEvery = 500 * time.Millisecond

// complete sends the shutdown's outcome and stops the watchdog.
func (n *notifier) complete(clean bool) {
	if n == nil {
		return
	}
	status := "STATUS=shutdown complete"
	if !clean {
		status += " (not clean: see the log)"
	}
	n.send(status)
	close(n.done)
}

// extend returns the EXTEND_TIMEOUT_USEC line for a stage that may take d.
func extend(d time.Duration) string {
	return "EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(addSat(d, extendMargin).Microseconds(), 10)
}

// addSat returns a+b, two durations not negative, or the longest
// time.Duration when the sum does not fit: a wrapped sum would be a
// negative EXTEND_TIMEOUT_USEC, which systemd ignores.
func addSat(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// activatedListeners returns the listening sockets systemd passed this
// process (socket activation: LISTEN_FDS, for the PID in LISTEN_PID), the
// main one and the admin one, each nil when not passed. A socket named
// "main" or "admin" (FileDescriptorName= of its .socket unit) is that one;
// the others, in the order passed, are the main listener then the admin
// one. Two sockets of one name are refused: systemd names every socket of
// a .socket unit alike, and the second ListenStream= of the main unit is
// not the admin listener. It unsets LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES, so that neither a second server nor a child process
// takes the sockets again. An admin socket beyond loopback needs cfg's
// AdminToken or AdminInsecure, as KIT_ADMIN_ADDR does. On an error, every
// socket passed is closed.
func activatedListeners(cfg Config) (main, admin net.Listener, err error) {
	files := activation.Files(true)
	defer func() {
		for _, f := range files {
			_ = f.Close() // a listener holds a duplicate
		}
	}()
	var rest []net.Listener
	fail := func(err error) (net.Listener, net.Listener, error) {
		closeAll(main, admin, rest...)
		return nil, nil, err
	}
	// The fds are numbered from 3 (SD_LISTEN_FDS_START), in order; f.Fd()
	// would make a socket passed with NonBlocking=yes blocking again.
	for i, f := range files {
		if j := slices.IndexFunc(files[:i], func(g *os.File) bool { return g.Name() == f.Name() }); j >= 0 {
			return fail(fmt.Errorf("kit: socket activation: fds %d and %d are both named %q (one .socket unit's, FileDescriptorName=): "+
				"kit serves one main listener and one admin listener, named \"main\" and \"admin\" in two .socket units", 3+j, 3+i, f.Name()))
		}
		ln, err := net.FileListener(f)
		if err != nil {
			return fail(fmt.Errorf("kit: socket activation: fd %d (%s) is not a listening socket: %w", 3+i, f.Name(), err))
		}
		switch f.Name() {
		case "main":
			main = ln
		case "admin":
			admin = ln
		default:
			rest = append(rest, ln)
		}
	}
	for _, ln := range rest {
		switch {
		case main == nil:
			main = ln
		case admin == nil:
			admin = ln
		default:
			return fail(fmt.Errorf("kit: socket activation: %d sockets passed (LISTEN_FDS), want at most 2: the main listener and the admin one", len(files)))
		}
	}
	if admin != nil && cfg.AdminToken == "" && !cfg.AdminInsecure && !isLoopback(admin.Addr().String()) {
		return fail(fmt.Errorf("kit: socket activation: admin socket %s beyond loopback needs KIT_ADMIN_TOKEN (or KIT_ADMIN_INSECURE=true)", admin.Addr()))
	}
	return main, admin, nil
}

func closeAll(main, admin net.Listener, rest ...net.Listener) {
	for _, ln := range append([]net.Listener{main, admin}, rest...) {
		if ln != nil {
			_ = ln.Close()
		}
	}
}
