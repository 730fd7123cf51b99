package kit

import (
	"context"
	"math/rand/v2"
	"net"
	"time"

	"github.com/connectkit/connectkit/internal/connctx"
)

// connContext is the main listener's http.Server.ConnContext: it keeps the
// connection for the shutdown (see [freshConns]) and, with
// MaxConnectionAge, sets when the connection retires.
//
// Written here because net/http has no setting for it (grpc-go's is
// keepalive.ServerParameters.MaxConnectionAge): a response with
// "Connection: close" makes net/http close an HTTP/1.1 connection after
// it, and send an HTTP/2 connection a graceful GOAWAY, which is what
// grpc-go does at a connection's age; [serving] adds that header.
func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	ctx = s.fresh.connContext(ctx, c)
	s.conns.accepted.Inc()
	s.conns.open.Inc()
	if age := s.cfg.MaxConnectionAge; age > 0 {
		connctx.FromContext(ctx).RetireAt = time.Now().Add(jitter(age))
	}
	return ctx
}

// jitter returns d moved at random by up to ±10%, as grpc-go moves
// MaxConnectionAge: connections opened together (a client pool's, after
// a deploy) then retire over a span instead of in one burst.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}

// retired reports whether c, a request's connection, is past its age.
func retired(c *connctx.State) bool {
	return c != nil && !c.RetireAt.IsZero() && !time.Now().Before(c.RetireAt)
}
