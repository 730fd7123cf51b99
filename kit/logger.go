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
func NewLogger(w io.Writer, format string, level slog.Leveler) *slog.Logger {
	if format == "" || format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(tint.NewHandler(w, &tint.Options{
			Level:      level,
			TimeFormat: time.TimeOnly,
		}))
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}
