package natsjs

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	neturl "net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startServer starts the embedded server and waits until it accepts
// connections, or until it reports that it cannot start (a data directory
// that is a file or not writable, a port in use): nats-server logs that with
// Fatalf and stops starting, which would otherwise leave the wait to time
// out with the reason only in the log.
//
// It locks the data directory first (see [lockDataDir]); unlock releases
// it once the server has shut down.
func startServer(cfg Config, log *serverLogger) (srv *server.Server, unlock func(), err error) {
	release, err := lockDataDir(cfg.DataDir, lockFile)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	opts := &server.Options{
		ServerName:   nameOf(cfg.Name), // nats-server refuses spaces
		JetStream:    true,
		StoreDir:     cfg.DataDir,
		SyncInterval: cfg.SyncInterval,
		SyncAlways:   cfg.SyncAlways,
		NoSigs:       true,
		DontListen:   cfg.Listen == "",
	}
	if cfg.Listen != "" {
		host, port, _ := net.SplitHostPort(cfg.Listen) // checked by Validate
		opts.Host = host
		opts.Port, _ = strconv.Atoi(port)
	}
	srv, err = server.NewServer(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("natsjs: failed to configure the embedded NATS server: %w", err)
	}
	fatal := make(chan string, 1)
	log.fatal = fatal
	log.routine.Store(true) // the banner, version and JetStream limits
	srv.SetLoggerV2(log, false, false, false)
	srv.Start()
	deadline := time.Now().Add(30 * time.Second)
	for !srv.ReadyForConnections(50 * time.Millisecond) {
		select {
		case reason := <-fatal:
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, nil, fmt.Errorf("natsjs: the embedded NATS server (data in %s) failed to start: %s", cfg.DataDir, reason)
		default:
		}
		if time.Now().After(deadline) {
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, nil, fmt.Errorf("natsjs: the embedded NATS server (data in %s) did not start within 30s", cfg.DataDir)
		}
	}
	log.routine.Store(false)
	return srv, release, nil
}

// ClientURL returns the URL at which other processes reach the embedded
// server, or "" without one or when it listens in-process only. For a
// server listening on every interface (Listen ":4222", "0.0.0.0:4222",
// "[::]:4222"), whose own URL names the unspecified address, its host is
// the loopback address, 127.0.0.1 or ::1, as [Broker.ServerAddress]'s is;
// the broker's own connection dials this URL too (Windows refuses to dial
// the unspecified address).
func (b *Broker) ClientURL() string {
	if b.server == nil || b.cfg.Listen == "" {
		return ""
	}
	raw := b.server.ClientURL()
	u, err := neturl.Parse(raw)
	if err != nil {
		return raw
	}
	u.Host = loopbackForUnspecified(u.Host)
	return u.String()
}

// ServerAddress returns the host:port of the NATS server the broker's
// connection is on now, or "" between connections and for an embedded server
// without Listen, which the connection reaches in-process. It implements
// [pubsub.ServerAddresser], so that the spans of publishes and deliveries carry
// server.address and server.port. The host is as the server's URL names it:
// Config.URL's, or for a server the connection learned from the cluster, the
// address that server advertises; for an embedded server listening on every
// interface (Listen ":4222"), the loopback address the connection reaches.
// After a reconnect it is the server reconnected to; a span asks when it
// starts, so a delivery that waited in the consumer's buffer across a reconnect
// names the new server, not the one it came through.
func (b *Broker) ServerAddress() string {
	if b.server != nil && b.cfg.Listen == "" {
		return ""
	}
	raw := b.nc.ConnectedUrl()
	if raw == "" {
		return ""
	}
	u, err := neturl.Parse(raw)
	if err != nil {
		return ""
	}
	return loopbackForUnspecified(u.Host)
}

// loopbackForUnspecified returns hostport with an unspecified host (that
// of an embedded server listening on every interface, Listen ":4222",
// whose URL says 0.0.0.0 or ::) replaced by the loopback address a
// connection to it reaches; any other hostport as it is.
func loopbackForUnspecified(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil || !ip.IsUnspecified():
		return hostport
	case ip.To4() != nil:
		return net.JoinHostPort("127.0.0.1", port)
	default:
		return net.JoinHostPort("::1", port)
	}
}

func (b *Broker) stopServer() {
	if b.server != nil {
		b.serverLog.routine.Store(true) // "Initiating Shutdown...", "Server Exiting.."
		b.server.Shutdown()
		b.server.WaitForShutdown()
		b.unlock()
	}
}

// serverLogger logs the embedded server's messages with slog, and sends the
// first fatal one to fatal, for startServer. Its notices are info, but debug
// while routine is set, as the server starts (some 25 lines: a banner, its
// version and id, JetStream's limits) and shuts down: New logs one line of
// its own instead. Notices of a running server (a slow consumer, a stream
// restored from a snapshot) stay info, warnings and errors keep their levels.
type serverLogger struct {
	logger  *slog.Logger
	fatal   chan<- string
	routine atomic.Bool
}

func (l *serverLogger) Noticef(format string, v ...any) {
	level := slog.LevelInfo
	if l.routine.Load() {
		level = slog.LevelDebug
	}
	l.logger.Log(context.Background(), level, "nats-server: "+fmt.Sprintf(format, v...))
}
func (l *serverLogger) Warnf(format string, v ...any) {
	l.logger.Warn("nats-server: " + fmt.Sprintf(format, v...))
}
func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.logger.Error("nats-server: " + msg)
	select {
	case l.fatal <- msg:
	default:
	}
}
func (l *serverLogger) Errorf(format string, v ...any) {
	l.logger.Error("nats-server: " + fmt.Sprintf(format, v...))
}
func (l *serverLogger) Debugf(format string, v ...any) {
	l.logger.Debug("nats-server: " + fmt.Sprintf(format, v...))
}
func (l *serverLogger) Tracef(format string, v ...any) {
	l.logger.Debug("nats-server: " + fmt.Sprintf(format, v...))
}
