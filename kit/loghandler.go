package kit

import (
	"context"
	"io"
	"log/slog"

	"github.com/connectkit/connectkit/internal/logline"
)

// flushingHandler writes a [lineWriter]'s buffer at once after every record
// at warn level or above. Below warn, a record whose values are all plain
// (strings, numbers, booleans, durations, times) is not formatted on the
// logging call's path: it waits, cloned, in the lineWriter, whose flusher
// formats it with the others of its batch before writing them out. That
// takes the formatting (the largest piece of a call's log line,
// BENCHMARKS.md) off the call's latency, and formats a batch with the
// formatter's code and data warm in the caches. A record holding anything
// else (an error, a struct, a slice: values that the caller may change
// after the call, or that format themselves) is formatted before Handle
// returns, after the records waiting before it, so lines stay in order.
type flushingHandler struct {
	slog.Handler // the formatter (JSON or tint), writing into w
	w            *lineWriter
}

// maxPending bounds the records waiting to be formatted; past it, the
// logging call formats them itself.
const maxPending = 256

// pendingLine is a record waiting to be formatted by its handler, or an
// RPC line of a JSON handler (json set), which takes the place of both.
type pendingLine struct {
	h slog.Handler
	r slog.Record

	json *jsonHandler
	rpc  logline.RPC
}

func (h *flushingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn && plainRecord(&r) && h.w.deferLine(h.Handler, &r) {
		return nil
	}
	h.w.fmu.Lock()
	h.w.formatPendingLocked()
	err := h.Handler.Handle(ctx, r)
	h.w.fmu.Unlock()
	if r.Level >= slog.LevelWarn {
		if ferr := h.w.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

// HandleRPC queues an info or debug RPC line of kit's JSON handler for the
// flusher as Handle queues a plain record, but as it is, without a record:
// ~1 000 instructions a line fewer (the record's attributes, their copies,
// plainRecord, and the keys' escaping: BENCHMARKS.md 1.33). It reports
// false for any other line, which then takes Handle's path.
func (h *flushingHandler) HandleRPC(l logline.RPC) bool {
	jh, ok := h.Handler.(*jsonHandler)
	if !ok || !jh.fast || jh.w != io.Writer(h.w) || l.Level >= slog.LevelWarn {
		return false
	}
	return h.w.deferRPC(jh, &l)
}

func (h *flushingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &flushingHandler{h.Handler.WithAttrs(attrs), h.w}
}

func (h *flushingHandler) WithGroup(name string) slog.Handler {
	return &flushingHandler{h.Handler.WithGroup(name), h.w}
}

// deferLine queues r for the flusher, unless maxPending lines wait.
func (lw *lineWriter) deferLine(h slog.Handler, r *slog.Record) bool {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	pl := lw.nextPendingLocked()
	if pl == nil {
		return false
	}
	// Clone: a later AddAttrs on the caller's copy must not write into
	// the attributes this copy shares.
	pl.h, pl.r = h, r.Clone()
	return true
}

// deferRPC queues h's RPC line l for the flusher, unless maxPending lines
// wait.
func (lw *lineWriter) deferRPC(h *jsonHandler, l *logline.RPC) bool {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	pl := lw.nextPendingLocked()
	if pl == nil {
		return false
	}
	pl.json, pl.rpc = h, *l
	return true
}

// nextPendingLocked returns a zero slot after the lines waiting, for the
// caller to fill before it unlocks mu, and makes sure that the flusher will
// format it; nil when maxPending lines wait. The slot is filled in place:
// it is zero (formatPendingLocked clears every slot it formats, and a new
// one is zero), and a pendingLine copied whole costs more than its fields.
func (lw *lineWriter) nextPendingLocked() *pendingLine {
	n := len(lw.pending)
	if n >= maxPending {
		return nil
	}
	if lw.pending == nil {
		lw.pending, lw.sparePending = lw.sparePending, nil
	}
	if n < cap(lw.pending) {
		lw.pending = lw.pending[:n+1]
	} else {
		lw.pending = append(lw.pending, pendingLine{})
	}
	lw.armLocked()
	return &lw.pending[n]
}

// formatPending formats the records waiting, in order, into the buffer.
func (lw *lineWriter) formatPending() {
	lw.fmu.Lock()
	defer lw.fmu.Unlock()
	lw.formatPendingLocked()
}

func (lw *lineWriter) formatPendingLocked() {
	lw.mu.Lock()
	p := lw.pending
	lw.pending = nil
	lw.mu.Unlock()
	if len(p) == 0 {
		return
	}
	// Lines of kit's JSON handler go into one buffer, written at once: a
	// Write and a pooled buffer per line cost ~400 instructions each
	// (BENCHMARKS.md 1.26). Any other line is written by its handler, after
	// the lines before it.
	b := lw.lines[:0]
	for i := range p {
		pl := &p[i]
		n, ok := len(b), false
		if pl.json != nil {
			b, ok = pl.json.appendRPC(b, &pl.rpc, &lw.times)
		} else if h, isJSON := pl.h.(*jsonHandler); isJSON && h.fast && h.w == io.Writer(lw) {
			b, ok = h.appendRecord(b, pl.r, &lw.times)
		}
		if ok {
			if len(b) >= flushSize {
				b = lw.writeLines(b)
			}
			*pl = pendingLine{} // drop the references
			continue
		}
		b = lw.writeLines(b[:n])
		h, r := pl.h, pl.r
		if pl.json != nil {
			h, r = pl.json, rpcRecord(&pl.rpc)
		}
		// The formatters are newHandler's, which read nothing from the
		// context; the caller's may be gone by now.
		_ = h.Handle(context.Background(), r)
		*pl = pendingLine{}
	}
	b = lw.writeLines(b)
	if cap(b) <= flushSize {
		lw.lines = b
	}
	lw.mu.Lock()
	if lw.sparePending == nil {
		lw.sparePending = p[:0]
	}
	lw.mu.Unlock()
}

// writeLines writes b, if not empty, and returns it emptied.
func (lw *lineWriter) writeLines(b []byte) []byte {
	if len(b) > 0 {
		_, _ = lw.Write(b) // it never fails
	}
	return b[:0]
}

// plainRecord reports whether every value of r is immutable once logged.
func plainRecord(r *slog.Record) bool {
	plain := true
	r.Attrs(func(a slog.Attr) bool {
		plain = plainValue(a.Value)
		return plain
	})
	return plain
}

func plainValue(v slog.Value) bool {
	switch v.Kind() {
	case slog.KindAny, slog.KindLogValuer:
		return false
	case slog.KindGroup:
		for _, a := range v.Group() {
			if !plainValue(a.Value) {
				return false
			}
		}
	}
	return true
}

// flushLogger writes what logger buffered, if it comes from [NewLogger].
func flushLogger(logger *slog.Logger) {
	if h, ok := logger.Handler().(*flushingHandler); ok {
		_ = h.w.Flush()
	}
}
