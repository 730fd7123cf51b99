package kit

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"golang.org/x/net/http/httpguts"
)

// headerFields sends, in the response header, the fields of a gRPC
// call's *connect.Error metadata that RFC 9110 keeps out of trailers
// (WWW-Authenticate, a 401's challenge, and the like): connect's gRPC
// error writer puts all of an error's metadata in the trailers, where
// net/http's HTTP/2 server dropped them, logging `ignoring invalid
// trailer "Www-Authenticate"` for each call, and its HTTP/1.1 server
// dropped them silently. Bare connect-go on net/http drops them so too;
// grpc-go sends an error with no message before it as a trailers-only
// response, one HEADERS frame, in which any field may be. kit's chain has
// it outermost, so that it sees the errors of every interceptor, the
// application's too, and of the handler. It runs only on a call that
// failed: a call that succeeds pays one function call.
//
// A stream that failed after its first message has sent its header: the
// fields are lost, as they were in the trailers, without the log line.
//
// A Connect unary call's error metadata, which connect appends to the
// response header, loses its connection-specific fields and the values
// the header has already (see [connectFields]). A gRPC-Web call's loses
// its connection-specific fields: connect answers an error before any
// message or response header as trailers-only, with the metadata in the
// response header, as Envoy does (a header that is empty then has nothing
// to send twice).
type headerFields struct{}

func (headerFields) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		resp, err := next(ctx, req)
		if err != nil && !req.Spec().IsClient {
			switch req.Peer().Protocol {
			case connect.ProtocolGRPC:
				if info, ok := connect.CallInfoForHandlerContext(ctx); ok {
					err = errorHeaderFields(err, info.ResponseHeader)
				}
			case connect.ProtocolConnect:
				if info, ok := connect.CallInfoForHandlerContext(ctx); ok {
					err = errorConnectFields(err, info.ResponseHeader())
				}
			case connect.ProtocolGRPCWeb:
				err = errorConnectFields(err, nil)
			}
		}
		return resp, err
	}
}

func (headerFields) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (headerFields) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := next(ctx, conn)
		if err != nil {
			switch conn.Peer().Protocol {
			case connect.ProtocolGRPC:
				err = errorHeaderFields(err, conn.ResponseHeader)
			case connect.ProtocolGRPCWeb:
				err = errorConnectFields(err, nil)
			}
		}
		return err
	}
}

// errorHeaderFields returns err, or, when it is (or wraps) a
// *connect.Error whose metadata has fields that trailers may not carry,
// the error headerFieldsFirst makes of it, having set those fields on the
// response header that header returns.
func errorHeaderFields(err error, header func() http.Header) error {
	var ce *connect.Error
	if !errors.As(err, &ce) || connect.IsWireError(ce) || !hasHeaderFields(ce) {
		return err
	}
	return headerFieldsFirst(header(), ce)
}

// errorConnectFields returns err, or, when it is (or wraps) a
// *connect.Error whose metadata has connection-specific fields or values
// that h, a Connect unary call's response header, has already, the error
// connectFields makes of it. For a gRPC-Web call h is nil: only the
// connection-specific fields go.
func errorConnectFields(err error, h http.Header) error {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return err
	}
	return connectFields(h, ce)
}

// connectFields returns ce for a Connect unary response, whose error
// metadata connect's error writer appends to h, the response header:
// without its connection-specific fields (see [connectionSpecific]),
// which over HTTP/2 did what they do in a gRPC header, and without the
// values h has already, which went out twice (a challenge set with
// ResponseHeader() and on the error too). ce itself is not changed; one
// without such fields is returned as it is, and so is a wire error, whose
// metadata connect does not send.
func connectFields(h http.Header, ce *connect.Error) *connect.Error {
	if connect.IsWireError(ce) {
		return ce
	}
	meta := metaOf(ce)
	rewrite := false
	for k, v := range meta {
		if connectionSpecific(k) || hasAny(headerValues(h, k), v) {
			rewrite = true
			break
		}
	}
	if !rewrite {
		return ce
	}
	out := newErrorLike(ce)
	for k, v := range meta {
		if connectionSpecific(k) {
			continue
		}
		have := headerValues(h, k)
		for _, s := range v {
			if !slices.Contains(have, s) {
				out.Meta()[k] = append(out.Meta()[k], s)
			}
		}
	}
	return out
}

// headerValues returns the values h has of the field k names, under its
// canonical key and under any other spelling of it: a handler may set
// h["www-authenticate"] directly, not with Set, which net/http sends as it
// is, beside the canonical key's values. It ranges over h: an error's
// metadata is compared on the error path alone.
func headerValues(h http.Header, k string) []string {
	ck := http.CanonicalHeaderKey(k)
	values := h[ck]
	for key, v := range h {
		if key != ck && strings.EqualFold(key, ck) {
			values = append(slices.Clip(values), v...)
		}
	}
	return values
}

// hasAny reports whether have holds one of values.
func hasAny(have, values []string) bool {
	for _, s := range values {
		if slices.Contains(have, s) {
			return true
		}
	}
	return false
}

// newErrorLike returns a new error with ce's code, cause and details, and
// no metadata.
func newErrorLike(ce *connect.Error) *connect.Error {
	out := connect.NewError(ce.Code(), ce.Unwrap())
	for _, d := range ce.Details() {
		out.AddDetail(d)
	}
	return out
}

// hasHeaderFields reports whether ce's metadata has a field that
// headerFieldsFirst moves to the header or drops.
func hasHeaderFields(ce *connect.Error) bool {
	for k := range metaOf(ce) {
		if isHeaderField(k) || connectionSpecific(k) {
			return true
		}
	}
	return false
}

// connectionSpecific reports whether k names a connection-specific field
// (RFC 9113 8.2.2: Connection, Keep-Alive, Proxy-Connection,
// Transfer-Encoding, Upgrade; and Te, which a response has no use for),
// which an HTTP/2 message may not carry, in its header or its trailers.
// An error's metadata may hold one when a handler copies another HTTP
// answer's header into it. Moved to the header, net/http's HTTP/2 server
// sent Keep-Alive, Proxy-Connection and Upgrade as they were (a response
// that RFC 9113 calls malformed, which browsers refuse), and took
// "Connection: close" as a request to close the client's whole
// connection, every call on it, with a GOAWAY (h2_bundle.go, writeChunk).
// grpc-go's server refuses a request that has Connection (gRFC A41).
func connectionSpecific(k string) bool {
	switch http.CanonicalHeaderKey(k) {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// metaOf returns ce's metadata without writing to ce: ce.Meta() makes
// the map of an error that has none, on ce, which a handler may return to
// every call (a package-level error), so that concurrent calls raced on
// it; connect reads the field itself. It asks a copy of ce instead.
func metaOf(ce *connect.Error) http.Header {
	cp := *ce
	return cp.Meta()
}

// isHeaderField reports whether the field named k of an error's metadata
// goes in the response header: a field that RFC 9110 keeps out of
// trailers (net/http's list, httpguts.ValidTrailerHeader), but not one
// that describes the response's framing and that connect drops from an
// error's metadata in every protocol (Content-Type, Content-Length,
// Content-Encoding, Host, Trailer), which in a gRPC answer's header would
// contradict the answer's own (a second Content-Type; a Content-Length
// on an answer without a body, which net/http then cuts).
func isHeaderField(k string) bool {
	if httpguts.ValidTrailerHeader(k) || connectionSpecific(k) {
		return false
	}
	switch http.CanonicalHeaderKey(k) {
	case "Content-Type", "Content-Length", "Content-Encoding", "Host", "Trailer":
		return false
	}
	return true
}

// headerFieldsFirst returns ce for a gRPC response, whose error metadata
// connect's error writer sends as trailers: the fields of ce's metadata
// that RFC 9110 keeps out of trailers (WWW-Authenticate, which a 401's
// challenge is, and the like) are set on h, the response's header, and the
// error returned lacks them; a value h has already, under any spelling of
// its key, is not set twice.
// Left in the trailers, net/http's HTTP/2 server dropped them and logged
// `ignoring invalid trailer "Www-Authenticate"` for each call.
// Connection-specific fields (see [connectionSpecific]) go nowhere: the
// error returned lacks them too. ce itself, which a func or a handler may return to every
// call, is not changed; without such fields it is returned as it is, and
// so is a wire error (one returned as a client gave it, by a handler or
// WithAuth's func): its metadata is the other server's response header
// and trailers (its Content-Type, its X-Request-Id, its challenge), none
// of which connect sends.
func headerFieldsFirst(h http.Header, ce *connect.Error) *connect.Error {
	if connect.IsWireError(ce) || !hasHeaderFields(ce) {
		return ce
	}
	out := newErrorLike(ce)
	for k, v := range metaOf(ce) {
		switch {
		case connectionSpecific(k):
			// Dropped: HTTP/2 has no place for it (see connectionSpecific).
		case isHeaderField(k):
			// A value the header has already (a handler that set its
			// challenge on the response header and on its error too)
			// goes out once.
			have := headerValues(h, k)
			k = http.CanonicalHeaderKey(k)
			for _, s := range v {
				if !slices.Contains(have, s) {
					h[k] = append(h[k], s)
					have = append(have, s)
				}
			}
		default:
			out.Meta()[k] = append([]string(nil), v...)
		}
	}
	return out
}
