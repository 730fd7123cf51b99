package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

// pieceNames are the default chain's pieces in the server order, as
// kit-pieces times them.
var pieceNames = []string{"tracing", "requestid", "logging", "metrics", "recovery", "validation"}

// pieceTimer serves kit-pieces: kit without its default chain, with the
// chain's pieces (interceptors.Default, with the server's logger and
// registry) as the user's interceptors, and a timestamp taken at every
// boundary: the HTTP handler's entry and exit (outside connect), before
// and after each piece, and around the service's handler. At exit it writes
// the medians per call of what each piece takes on the way in and on the
// way out, and of the time from the HTTP entry to the handler ("pre"), in
// the handler, and from the handler back to the HTTP exit ("post"). The
// timestamps cost ~50 ns each, so the variant measures where a call's time
// goes, not what it costs.
type pieceTimer struct {
	mu    sync.Mutex
	in    [][]time.Duration // by piece: its entry to the next one's
	out   [][]time.Duration // by piece: the next one's exit to its own
	pre   []time.Duration
	inner []time.Duration
	post  []time.Duration
}

// callTimes are one call's timestamps: at[i] on the way in at boundary i
// (0 before the first piece, len(pieceNames) before the handler), back[i]
// on the way out.
type callTimes struct {
	start, end time.Time
	at, back   [8]time.Time
}

type callTimesKey struct{}

// interceptors returns the pieces of chain with a boundary before each
// and one before the handler.
func (p *pieceTimer) interceptors(chain *interceptors.Chain) []connect.Interceptor {
	pieces := []connect.Interceptor{chain.Tracing, chain.RequestID, chain.Logging, chain.Metrics, chain.Recovery, chain.Validation}
	var list []connect.Interceptor
	for i, piece := range pieces {
		list = append(list, boundary(i), piece)
	}
	return append(list, boundary(len(pieces)))
}

// wrap times h from the HTTP handler's entry to its exit.
func (p *pieceTimer) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct := &callTimes{start: time.Now()}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callTimesKey{}, ct)))
		ct.end = time.Now()
		n := len(pieceNames)
		if ct.at[n].IsZero() {
			return // not a call that reached the handler
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.in == nil {
			p.in, p.out = make([][]time.Duration, n), make([][]time.Duration, n)
		}
		for i := range n {
			p.in[i] = append(p.in[i], ct.at[i+1].Sub(ct.at[i]))
			p.out[i] = append(p.out[i], ct.back[i].Sub(ct.back[i+1]))
		}
		p.pre = append(p.pre, ct.at[n].Sub(ct.start))
		p.inner = append(p.inner, ct.back[n].Sub(ct.at[n]))
		p.post = append(p.post, ct.end.Sub(ct.back[n]))
	})
}

// boundary records the time a call passes it, both ways.
type boundary int

func (b boundary) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ct, _ := ctx.Value(callTimesKey{}).(*callTimes)
		if ct == nil {
			return next(ctx, req)
		}
		ct.at[b] = time.Now()
		resp, err := next(ctx, req)
		ct.back[b] = time.Now()
		return resp, err
	}
}

func (b boundary) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (b boundary) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// report writes one line of medians to w.
func (p *pieceTimer) report(w io.Writer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "pieces: %d calls, median in/out:", len(p.pre))
	for i, name := range pieceNames {
		if p.in != nil {
			fmt.Fprintf(&b, " %s %v/%v", name, median(p.in[i]), median(p.out[i]))
		}
	}
	fmt.Fprintf(&b, "; pre %v, handler %v, post %v\n", median(p.pre), median(p.inner), median(p.post))
	_, _ = io.WriteString(w, b.String())
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// mountTimed mounts the ping service on srv for kit-pieces.
func mountTimed(srv *kit.Server, p *pieceTimer) error {
	chain, err := interceptors.Default(srv.Logger(), srv.Registry(), interceptors.WithQuietProcedures("/grpc.health.v1.Health/"))
	if err != nil {
		return err
	}
	opts := append(srv.HandlerOptions(), connect.WithInterceptors(p.interceptors(chain)...))
	path, h := pingv1connect.NewPingServiceHandler(pingService{}, opts...)
	srv.Mount(path, p.wrap(h))
	return nil
}
