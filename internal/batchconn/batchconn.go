// Package batchconn wraps a [net.Listener] so that the HTTP/2 connections it
// accepts coalesce their writes and buffer their reads.
//
// net/http's HTTP/2 server writes the HEADERS, DATA and trailer frames of a
// call in separate write(2) calls and reads each frame with two read(2)
// calls on the raw socket. A connection returned by [NewListener] appends
// writes to a bounded per-connection buffer that a flusher goroutine sends
// in one syscall, and serves reads from a buffer filled by one syscall, so a
// gRPC call over h2c costs a fraction of the syscalls.
//
// No library does this for net/http's server (x/net/http2 buffers only
// within one frame write), so it is written here.
//
// The flusher uses no timer: the runtime rounds sub-millisecond sleeps up to
// about a millisecond when the poller is idle, which would add that much
// latency to every lone write. Instead the flusher yields once
// ([runtime.Gosched]), letting the goroutines that are producing the rest of
// a response run, and then writes everything buffered in one syscall. It
// starts on the first write to an empty buffer and exits as soon as the
// buffer is empty, so an idle connection holds no goroutine and no write
// buffer. Likewise a read that has used up its buffer yields before it goes
// back to the socket, so that at one call in flight the handler runs and
// its response is written before the read that finds the socket empty.
//
// By default only connections that open with the HTTP/2 prior-knowledge
// preface (h2c) are batched; every other connection (HTTP/1.1) passes reads
// and writes straight to the socket and keeps [io.ReaderFrom] (sendfile).
// Beneath crypto/tls, where the first bytes are a ClientHello, [ModeALPN]
// with [TLSConfig] batches the connections that negotiate HTTP/2.
package batchconn

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Mode selects which accepted connections are batched.
type Mode int

const (
	// ModeH2C batches connections whose first bytes are the HTTP/2
	// prior-knowledge preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") and passes
	// every other connection through untouched. It is the default.
	ModeH2C Mode = iota
	// ModeALPN is for a listener beneath crypto/tls whose tls.Config comes
	// from [TLSConfig]: a connection is batched from the moment its
	// ClientHello offers HTTP/2 ("h2") by ALPN, which net/http prefers
	// whenever it is offered; every other connection passes through.
	ModeALPN
	// ModeAll batches every connection from its first byte, whatever it
	// carries.
	ModeAll
)

// String returns the mode's name ("h2c", "alpn", "all") or "mode_%d".
func (m Mode) String() string {
	switch m {
	case ModeH2C:
		return "h2c"
	case ModeALPN:
		return "alpn"
	case ModeAll:
		return "all"
	}
	return fmt.Sprintf("mode_%d", int(m))
}

// Default values of [Config] fields left at zero.
const (
	DefaultMaxBufferedBytes = 64 << 10
	DefaultReadBufferSize   = 4 << 10
	DefaultFlushTimeout     = 30 * time.Second
	DefaultCloseGrace       = time.Second
)

// Config configures [NewListener]. Its zero value is valid: every field left
// at zero takes the default it documents.
type Config struct {
	// Mode selects which connections are batched. Default: [ModeH2C].
	Mode Mode

	// MaxBufferedBytes bounds the bytes waiting in one connection's write
	// buffer. A Write that finds the buffer full blocks until the flusher
	// has handed the buffer to the kernel (one more buffer's worth may be
	// inside that write call). Default: 64 KiB.
	MaxBufferedBytes int

	// ReadBufferSize is the size of one connection's read buffer. Reads at
	// least this large bypass it when it is empty. Default: 4 KiB.
	ReadBufferSize int

	// FlushTimeout is the write deadline of every flush: a flush that does
	// not complete within it (a peer that stopped reading) fails, the error
	// sticks to the connection and the socket is closed. Once writes are
	// buffered, net/http's own write timeouts no longer reach the socket,
	// so this is what cuts such a peer. A write deadline set on the
	// connection that is earlier wins. Default: 30s.
	FlushTimeout time.Duration

	// CloseGrace bounds how long Close waits for buffered bytes to be
	// written before it closes the socket. Close blocks while it waits, so
	// that a server that returns from a graceful shutdown has sent every
	// byte it wrote (net/http closes HTTP/2 connections right after their
	// last frames). A peer that reads makes that wait a few microseconds;
	// one that has stopped reading makes it CloseGrace. net/http's
	// Server.Close closes connections one after another, so a server calls
	// [SkipCloseGrace] first. Default: 1s.
	CloseGrace time.Duration

	// ReadDeadlineMessage, if not empty, is the text of the error that a
	// read cut by a read deadline set with [SetMessageReadDeadline]
	// returns, in place of the socket's *net.OpError, whose text names
	// both ends' addresses ("read tcp 127.0.0.1:8080->10.0.0.7:51234: i/o
	// timeout"): a handler that answers a request body's read error with
	// its text (connect-go does) would send the server's address to the
	// client. The error is a net.Error whose Timeout and Temporary are
	// true and that matches os.ErrDeadlineExceeded with errors.Is, as the
	// socket's does: net/http and crypto/tls tell a deadline's error by
	// those. Only a read that fails pays for it. A deadline set with
	// SetReadDeadline (net/http's own, a TLS handshake's, a handler's, a
	// hijacked connection's) keeps the socket's error. Default: the
	// socket's error.
	ReadDeadlineMessage string
}

// Validate reports the first invalid field, naming it and its value.
func (c Config) Validate() error {
	switch {
	case c.Mode < ModeH2C || c.Mode > ModeAll:
		return fmt.Errorf("batchconn: Mode %d is unknown", int(c.Mode))
	case c.MaxBufferedBytes < 0:
		return fmt.Errorf("batchconn: MaxBufferedBytes %d is negative", c.MaxBufferedBytes)
	case c.ReadBufferSize < 0:
		return fmt.Errorf("batchconn: ReadBufferSize %d is negative", c.ReadBufferSize)
	case c.FlushTimeout < 0:
		return fmt.Errorf("batchconn: FlushTimeout %s is negative", c.FlushTimeout)
	case c.CloseGrace < 0:
		return fmt.Errorf("batchconn: CloseGrace %s is negative", c.CloseGrace)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if c.ReadBufferSize == 0 {
		c.ReadBufferSize = DefaultReadBufferSize
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = DefaultFlushTimeout
	}
	if c.CloseGrace == 0 {
		c.CloseGrace = DefaultCloseGrace
	}
	return c
}

// NewListener returns a listener whose accepted connections are batched as
// cfg.Mode selects. It fails only if cfg is invalid. Closing the returned
// listener closes inner.
func NewListener(inner net.Listener, cfg Config) (net.Listener, error) {
	if inner == nil {
		return nil, errors.New("batchconn: inner listener is nil")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sh := &shared{cfg: cfg.withDefaults()}
	if cfg.ReadDeadlineMessage != "" {
		sh.readDeadline = &deadlineError{msg: cfg.ReadDeadlineMessage}
	}
	return &listener{Listener: inner, sh: sh}, nil
}

type listener struct {
	net.Listener
	sh *shared
}

// SkipCloseGrace makes the connections of ln, a listener from
// [NewListener], close at once from now on: Close and CloseWrite drop what
// is still buffered instead of waiting up to CloseGrace for it to be
// written, and a Write that finds its buffer full fails instead of waiting
// for room. It is for a server that forces its connections closed, as
// net/http's Server.Close does after a graceful Shutdown ran out of time:
// Server.Close closes connections one after another, so each connection
// whose peer stopped reading would otherwise add CloseGrace to it. (The
// full-buffer rule is for crypto/tls, whose Close sends a close_notify
// alert, and waits up to 5s for that Write, before closing the
// connection beneath it.) It does nothing if ln is another listener, and
// cannot be undone.
//
// The switch is one flag that the listener's connections share, read only
// when a connection closes or a Write waits for room: rather than tracking
// connections to close them concurrently, every Close becomes cheap, so
// closing them one after another costs no more than that.
func SkipCloseGrace(ln net.Listener) {
	if l, ok := ln.(*listener); ok {
		l.sh.noGrace.Store(true)
	}
}

// Accept waits for the next connection and wraps it.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newConn(c, l.sh), nil
}
