package interceptors

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect"
)

// handlerStream counts the messages of a handler's stream. Send and Receive
// may run on different goroutines (bidi), hence the atomics.
type handlerStream struct {
	connect.StreamingHandlerConn

	sent, received atomic.Int64
	onSend         func(msg any) // optional, after a successful Send
	onReceive      func(msg any) // optional, after a successful Receive
}

// Send counts msg unless it is nil: connect's ServerStream.Send(nil) sends
// only the response headers.
func (s *handlerStream) Send(msg any) error {
	err := s.StreamingHandlerConn.Send(msg)
	if err == nil && msg != nil {
		s.sent.Add(1)
		if s.onSend != nil {
			s.onSend(msg)
		}
	}
	return err
}

func (s *handlerStream) Receive(msg any) error {
	err := s.StreamingHandlerConn.Receive(msg)
	if err == nil {
		s.received.Add(1)
		if s.onReceive != nil {
			s.onReceive(msg)
		}
	}
	return err
}

// clientStream counts the messages of a client's stream, remembers the error
// that ended it and calls finish exactly once, when the caller closes the
// response or, if it never does, when the call's context is done.
type clientStream struct {
	connect.StreamingClientConn

	sent, received atomic.Int64
	onSend         func(msg any) // optional, after a successful Send
	onReceive      func(msg any) // optional, after a successful Receive

	ctx    context.Context
	finish func(s *clientStream, err error)
	stop   func() bool

	mu   sync.Mutex
	err  error // first error other than io.EOF
	eof  bool  // Receive reached the end of the response stream
	once sync.Once
}

// observeClientStream wraps conn; finish receives the call's result.
func observeClientStream(ctx context.Context, conn connect.StreamingClientConn, finish func(*clientStream, error)) *clientStream {
	s := &clientStream{StreamingClientConn: conn, ctx: ctx, finish: finish}
	s.stop = context.AfterFunc(ctx, s.end)
	return s
}

func (s *clientStream) Send(msg any) error {
	err := s.StreamingClientConn.Send(msg)
	switch {
	case err == nil:
		s.sent.Add(1)
		if s.onSend != nil {
			s.onSend(msg)
		}
	case !errors.Is(err, io.EOF): // io.EOF: the real error comes from Receive
		s.setErr(err)
	}
	return err
}

func (s *clientStream) Receive(msg any) error {
	err := s.StreamingClientConn.Receive(msg)
	switch {
	case err == nil:
		s.received.Add(1)
		if s.onReceive != nil {
			s.onReceive(msg)
		}
	case errors.Is(err, io.EOF):
		s.mu.Lock()
		s.eof = true
		s.mu.Unlock()
	default:
		s.setErr(err)
	}
	return err
}

func (s *clientStream) CloseResponse() error {
	err := s.StreamingClientConn.CloseResponse()
	if s.stop() {
		s.end()
	}
	return err
}

func (s *clientStream) setErr(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// end reports the stream's result once: its error if it had one, success if
// it was closed or read to its end, the context's error otherwise.
func (s *clientStream) end() {
	s.once.Do(func() {
		s.mu.Lock()
		err, eof := s.err, s.eof
		s.mu.Unlock()
		if err == nil && !eof {
			err = s.ctx.Err() // nil when the caller closed the stream early
		}
		s.finish(s, err)
	})
}
