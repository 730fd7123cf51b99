package kit

import (
	"net/http"
	"time"

	"github.com/connectkit/connectkit/internal/connctx"
)

// SetSendStall sets how long a stream's Send may wait for its client (see
// sendGuard), for services mounted after the call.
func SetSendStall(s *Server, d time.Duration) { s.sendStall = d }

// SetCutGrace sets how long the shutdown waits for the handlers of the
// calls it cut at ShutdownTimeout (closeGrace, 1s, otherwise).
func SetCutGrace(s *Server, d time.Duration) { s.cutGrace = d }

// StackMark returns where the stack of the connection r came over was
// after its last growth (see growConnStack), or 0.
func StackMark(r *http.Request) uintptr {
	if c := connctx.FromContext(r.Context()); c != nil {
		return c.StackMark
	}
	return 0
}
