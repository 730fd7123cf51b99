package kit

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/internal/restcall"
)

// serveConnectGet serves r, vanguard's Connect GET of a unary method
// without side effects (idempotency_level NO_SIDE_EFFECTS), which it makes
// of a REST GET, with h; when h refuses the GET, as connect's handler of a
// method built without connect.WithIdempotency(IdempotencyNoSideEffects)
// does (405, no body: protoc-gen-connect-go adds the option, a handler
// written by hand, or built from a descriptor, may lack it), it serves the
// same call again as a Connect POST, which every unary handler takes.
// vanguard turned the 405 into 500 "unexpected end of JSON input" (it
// reads a Connect error's JSON from the body), where grpc-gateway, which
// calls every method with a POST, serves the route. vary says that the
// REST response may be gzipped (see [varyEncoding]), which connect says
// of its GET's answer and not of a POST's.
func serveConnectGet(h http.Handler, w http.ResponseWriter, r *http.Request, vary bool) {
	g := &getRefusal{ResponseWriter: w}
	h.ServeHTTP(g, r)
	if !g.refused {
		return
	}
	delete(w.Header(), "Allow")
	post, err := connectPost(r)
	if err != nil {
		_ = connect.NewErrorWriter().Write(w, r, connect.NewError(connect.CodeInternal, err))
		return
	}
	if vary {
		varyEncoding(w.Header())
	}
	h.ServeHTTP(w, post)
}

// connectPost returns the Connect unary POST that carries the message of
// r, a Connect GET: its query's message (base64url when the query says
// base64=1, as vanguard's binary codec has it), in the body, compressed as
// the query's compression says.
func connectPost(r *http.Request) (*http.Request, error) {
	q := r.URL.Query()
	msg := []byte(q.Get("message"))
	if q.Get("base64") == "1" {
		var err error
		if msg, err = base64.RawURLEncoding.DecodeString(q.Get("message")); err != nil {
			return nil, fmt.Errorf("kit: the message of vanguard's call: %w", err)
		}
	}
	post := r.Clone(r.Context())
	post.Method = http.MethodPost
	post.URL.RawQuery = ""
	if restcall.Marked(q) {
		restcall.Mark(post.URL) // still a REST call to the interceptors
	}
	post.Body, post.ContentLength = io.NopCloser(bytes.NewReader(msg)), int64(len(msg))
	post.Header["Content-Type"] = []string{"application/" + q.Get("encoding")}
	if c := q.Get("compression"); c != "" {
		post.Header["Content-Encoding"] = []string{c}
	}
	return post, nil
}

// getRefusal is the ResponseWriter of [serveConnectGet]'s GET: it holds
// back a 405 written before anything else, and what follows it.
type getRefusal struct {
	http.ResponseWriter
	refused bool // the handler answered 405 first: nothing went to the client
	wrote   bool // a status or body went to the client
}

func (g *getRefusal) WriteHeader(code int) {
	if !g.wrote && code == http.StatusMethodNotAllowed {
		g.refused = true
	}
	if g.refused {
		return
	}
	g.wrote = true
	g.ResponseWriter.WriteHeader(code)
}

func (g *getRefusal) Write(p []byte) (int, error) {
	if g.refused {
		return len(p), nil
	}
	g.wrote = true
	return g.ResponseWriter.Write(p)
}

// Flush implements http.Flusher; after a refusal it does nothing.
func (g *getRefusal) Flush() {
	if !g.refused {
		g.wrote = true
		_ = http.NewResponseController(g.ResponseWriter).Flush()
	}
}

// Unwrap lets http.ResponseController reach the writer under g.
func (g *getRefusal) Unwrap() http.ResponseWriter { return g.ResponseWriter }
