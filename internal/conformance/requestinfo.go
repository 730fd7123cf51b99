package conformance

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	conformancev1 "github.com/connectkit/connectkit/internal/gen/connectrpc/conformance/v1"
)

// requestInfo is what the suite expects echoed back about a call: the
// request headers the handler saw, the time left before the call's deadline,
// the query of a Connect GET, and the request messages.
func requestInfo(ctx context.Context, header http.Header, reqs []*anypb.Any) *conformancev1.ConformancePayload_RequestInfo {
	info := &conformancev1.ConformancePayload_RequestInfo{
		RequestHeaders: protoHeaders(header),
		Requests:       reqs,
	}
	if deadline, ok := ctx.Deadline(); ok {
		info.TimeoutMs = proto.Int64(time.Until(deadline).Milliseconds())
	}
	if req, _ := ctx.Value(httpRequestKey{}).(httpRequest); len(req.query) > 0 {
		info.ConnectGetInfo = &conformancev1.ConformancePayload_ConnectGetInfo{QueryParams: protoHeaders(req.query)}
	}
	return info
}

// httpRequestKey is the context key of the httpRequest facts connect-go does
// not pass to handlers.
type httpRequestKey struct{}

// httpRequest holds what handlers need from the HTTP request.
type httpRequest struct {
	query url.Values      // of a GET (Connect GET of an idempotent method)
	done  <-chan struct{} // closed when the client goes away
}

// withHTTPRequest makes the HTTP request's query and end available to
// handlers through the context.
func withHTTPRequest(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := httpRequest{done: r.Context().Done()}
		if r.Method == http.MethodGet {
			req.query = r.URL.Query()
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), httpRequestKey{}, req)))
	})
}

// protoHeaders converts HTTP headers or URL query parameters.
func protoHeaders(src map[string][]string) []*conformancev1.Header {
	out := make([]*conformancev1.Header, 0, len(src))
	for name, values := range src {
		out = append(out, &conformancev1.Header{Name: name, Value: values})
	}
	return out
}

// addHeaders adds every value of src to dst.
func addHeaders(dst http.Header, src []*conformancev1.Header) {
	for _, h := range src {
		for _, v := range h.GetValue() {
			dst.Add(h.GetName(), v)
		}
	}
}

// asAny packs a request message for the request info.
func asAny(msg proto.Message) (*anypb.Any, error) {
	a, err := anypb.New(msg)
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("failed to pack %s: %w", msg.ProtoReflect().Descriptor().FullName(), err))
	}
	return a, nil
}
