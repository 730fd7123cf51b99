package kit

import (
	"context"
	"io"
	"log/slog"
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

// pendingLine is a record waiting to be formatted by its handler.
type pendingLine struct {
	h slog.Handler
	r slog.Record
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

func (h *flushingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &flushingHandler{h.Handler.WithAttrs(attrs), h.w}
}

func (h *flushingHandler) WithGroup(name string) slog.Handler {
	return &flushingHandler{h.Handler.WithGroup(name), h.w}
}

// deferLine queues r for the flusher, unless maxPending records wait.
func (lw *lineWriter) deferLine(h slog.Handler, r *slog.Record) bool {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if len(lw.pending) >= maxPending {
		return false
	}
	if lw.pending == nil {
		lw.pending, lw.sparePending = lw.sparePending, nil
	}
	// Clone: a later AddAttrs on the caller's copy must not write into
	// the attributes this copy shares.
	lw.pending = append(lw.pending, pendingLine{h, r.Clone()})
	lw.armLocked()
	return true
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
		if h, ok := p[i].h.(*jsonHandler); ok && h.fast && h.w == io.Writer(lw) {
			n := len(b)
			if b, ok = h.appendRecord(b, p[i].r); ok {
				if len(b) >= flushSize {
					b = lw.writeLines(b)
				}
				p[i] = pendingLine{} // drop the references
				continue
			}
			b = b[:n]
		}
		b = lw.writeLines(b)
		// The formatters are newHandler's, which read nothing from the
		// context; the caller's may be gone by now.
		_ = p[i].h.Handle(context.Background(), p[i].r)
		p[i] = pendingLine{}
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
