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
// [WithLogger], writing to w in format at level. Format "json" writes one JSON
// object per line (for log collectors; the same bytes as [slog.JSONHandler],
// formatted faster), "text" writes colored human-readable lines
// ([github.com/lmittmann/tint]), and "auto" (or "") picks text when w is a
// terminal and JSON otherwise; any other format writes JSON (Config.Validate
// refuses it in KIT_LOG_FORMAT). level is read on every record, so a
// [slog.LevelVar] changes the level at run time.
//
// Lines are written in batches: an info line waits at most 5 ms (or until
// 64 KiB are buffered) and goes out in one write with the lines logged
// meanwhile, which spares a system call per call on a busy server and one
// on the call's path at low load. An info or debug line whose values are
// all strings, numbers, booleans, durations or times is also formatted
// then, with its batch, off the logging call's path; it keeps the time it
// was logged at. A line with any other value (an error, a slice, a struct)
// is formatted before the call returns, since its values may change
// afterwards. Lines stay in order. Lines at warn level and above are
// written before the logging call returns, and Server.Run writes what is
// left of the server's logger before it returns; a crash, or a program
// that exits within 5 ms of an info line logged after Run returned (or
// without a Server), can lose the info lines of those last 5 ms.
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
	return slog.New(&flushingHandler{newHandler(lw, format, level), lw})
}

func newHandler(w io.Writer, format string, level slog.Leveler) slog.Handler {
	if format == "text" {
		return tint.NewTextHandler(w, &tint.Options{
			Level:      level,
			TimeFormat: time.TimeOnly,
		})
	}
	return newJSONHandler(w, level)
}
