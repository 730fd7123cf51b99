package kit

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lmittmann/tint"
	"golang.org/x/term"
)

// NewLogger returns the logger a [Server] uses when none is given with
// [WithLogger]: format "json" writes one JSON object per line (for log
// collectors), "text" writes colored human-readable lines
// ([github.com/lmittmann/tint]), and "auto" (or "") picks text when w is a
// terminal and JSON otherwise. level is read on every record, so a
// [slog.LevelVar] changes the level at run time.
//
// Lines are written in batches: the lines that concurrent calls log in the
// same round of the Go scheduler go out in one write, which spares a system
// call per call on a busy server. Lines at warn level and above are
// written before the logging call returns, and [Server.Run] writes what is
// left before it returns; a crash can lose the info lines of its last
// microseconds.
func NewLogger(w io.Writer, format string, level slog.Leveler) *slog.Logger {
	if format == "" || format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	if w == io.Discard {
		return slog.New(newHandler(w, format, level))
	}
	lw := newLineWriter(w)
	return slog.New(flushingHandler{newHandler(lw, format, level), lw})
}

func newHandler(w io.Writer, format string, level slog.Leveler) slog.Handler {
	if format == "text" {
		return tint.NewHandler(w, &tint.Options{
			Level:      level,
			TimeFormat: time.TimeOnly,
		})
	}
	return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
}
