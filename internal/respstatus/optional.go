package respstatus

import (
	"bufio"
	"io"
	"net"
	"net/http"
)

// newCall returns the ResponseWriter of a call whose handler writes to
// rw through w: a [call] that has, of the optional interfaces that
// net/http's ResponseWriters have beside [http.Flusher], those that rw
// has: [http.Hijacker] and [io.ReaderFrom] (HTTP/1.x), [http.Pusher]
// (HTTP/2). A handler mounted at a service's path that upgrades an
// HTTP/1.1 connection (a WebSocket) type-asserts Hijacker, as
// gorilla/websocket and coder/websocket do, and io.Copy looks for
// ReaderFrom (sendfile); an [http.ResponseController] alone reaches
// through Unwrap. Each returns [ErrHandlerReturned] once released.
// CloseNotifier (deprecated) and io.StringWriter (io.WriteString falls
// back to Write) are not passed on.
//
// Written by hand, not with github.com/felixge/httpsnoop (v1.1.0), which
// does the same for every combination of nine interfaces: its Wrap makes
// a method value and a closure for each hook, 20 allocations and 489 B a
// call with five hooks (a throwaway go test -benchmem), where this makes
// one; and its wrappers' Unwrap hands out the wrapped writer after
// release, which a call's writer must not.
//
// A call of rw that has Hijacker and ReaderFrom but not Pusher, as
// net/http's HTTP/1.x ResponseWriter, goes in spare when spare is not nil.
func newCall(w *Writer, rw http.ResponseWriter, spare *Spare) (*call, http.ResponseWriter) {
	_, h := rw.(http.Hijacker)
	_, r := rw.(io.ReaderFrom)
	_, p := rw.(http.Pusher)
	var (
		c   *call
		out http.ResponseWriter
	)
	switch {
	case h && r && !p:
		var x *callHR
		if spare != nil {
			x = &spare.hr
		} else {
			x = new(callHR)
		}
		c, out = &x.call, x
	case !h && !r && p:
		x := &callP{}
		c, out = &x.call, x
	case !h && !r && !p:
		c = &call{}
		out = c
	case h && !r && !p:
		x := &callH{}
		c, out = &x.call, x
	case !h && r && !p:
		x := &callR{}
		c, out = &x.call, x
	case h && r:
		x := &callHRP{}
		c, out = &x.call, x
	case h:
		x := &callHP{}
		c, out = &x.call, x
	default:
		x := &callRP{}
		c, out = &x.call, x
	}
	c.w.Store(w)
	return c, out
}

// The ResponseWriters of calls that have optional interfaces; see
// newCall.
type (
	callH   struct{ call }
	callR   struct{ call }
	callP   struct{ call }
	callHR  struct{ call }
	callHP  struct{ call }
	callRP  struct{ call }
	callHRP struct{ call }
)

func (c *callH) Hijack() (net.Conn, *bufio.ReadWriter, error)   { return c.hijack() }
func (c *callHR) Hijack() (net.Conn, *bufio.ReadWriter, error)  { return c.hijack() }
func (c *callHP) Hijack() (net.Conn, *bufio.ReadWriter, error)  { return c.hijack() }
func (c *callHRP) Hijack() (net.Conn, *bufio.ReadWriter, error) { return c.hijack() }

func (c *callR) ReadFrom(src io.Reader) (int64, error)   { return c.readFrom(src) }
func (c *callHR) ReadFrom(src io.Reader) (int64, error)  { return c.readFrom(src) }
func (c *callRP) ReadFrom(src io.Reader) (int64, error)  { return c.readFrom(src) }
func (c *callHRP) ReadFrom(src io.Reader) (int64, error) { return c.readFrom(src) }

func (c *callP) Push(target string, opts *http.PushOptions) error   { return c.push(target, opts) }
func (c *callHP) Push(target string, opts *http.PushOptions) error  { return c.push(target, opts) }
func (c *callRP) Push(target string, opts *http.PushOptions) error  { return c.push(target, opts) }
func (c *callHRP) Push(target string, opts *http.PushOptions) error { return c.push(target, opts) }

// hijack is [http.Hijacker]'s Hijack, passed to the wrapped writer, which
// newCall made sure has it; once released, it fails with
// [ErrHandlerReturned]. A hijacked call records no status: the
// connection is the handler's.
func (c *call) hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w := c.w.Load(); w != nil {
		return w.w.(http.Hijacker).Hijack()
	}
	return nil, nil, ErrHandlerReturned
}

// readFrom is [io.ReaderFrom]'s ReadFrom. A body that the Writer may keep
// (an error's, a stream's) goes through Write, which keeps its start;
// any other is passed to the wrapped writer's ReadFrom (sendfile on a
// plain HTTP/1.x connection). Once released, it fails with
// [ErrHandlerReturned].
func (c *call) readFrom(src io.Reader) (int64, error) {
	w := c.w.Load()
	if w == nil {
		return 0, ErrHandlerReturned
	}
	if w.stream || w.status >= 400 {
		return io.Copy(writeOnly{c}, src)
	}
	if w.status == 0 {
		w.status = http.StatusOK // as the wrapped writer's ReadFrom writes it
	}
	return w.w.(io.ReaderFrom).ReadFrom(src)
}

// push is [http.Pusher]'s Push, passed on; once released, it fails with
// [ErrHandlerReturned].
func (c *call) push(target string, opts *http.PushOptions) error {
	if w := c.w.Load(); w != nil {
		return w.w.(http.Pusher).Push(target, opts)
	}
	return ErrHandlerReturned
}

// writeOnly hides a call's ReadFrom from io.Copy, which would call it
// again.
type writeOnly struct{ c *call }

func (o writeOnly) Write(p []byte) (int, error) { return o.c.Write(p) }
