package kit

import "time"

// SetSendStall sets how long a stream's Send may wait for its client (see
// sendGuard), for services mounted after the call.
func SetSendStall(s *Server, d time.Duration) { s.sendStall = d }
