package kit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// This file puts the query parameters that kit holds from vanguard (see
// restquery.go) into the request message of the call vanguard makes of the
// method: a Connect GET's query, a unary call's body or a stream's first
// envelope.

// withHeld returns r, a call that vanguard makes of md's method, with
// held, the query parameters kept from vanguard (see [restRoutes.serve]),
// set in its message, or answers w the error of one that fails,
// InvalidArgument, and returns nil. stream says whether the method
// streams (a google.api.HttpBody download or upload), which vanguard
// calls with the Connect streaming protocol.
//
// The parameters' encoding is appended to vanguard's message, which
// protobuf merges: lists append, map entries replace. A singular field,
// which must replace the one vanguard's message has (from the body, say;
// an empty FieldMask or string clears it), has kit read vanguard's
// message and encode it again with the parameters set: a unary call's
// whole, a stream's first alone (see [firstMessageExtra]), the one
// vanguard set the query in. The parameters are first set in an empty
// message, whose error (the same in any message) is answered before the
// handler runs.
func withHeld(w http.ResponseWriter, r *http.Request, held heldQuery, md protoreflect.MessageDescriptor, stream bool) *http.Request {
	msg := dynamicpb.NewMessage(md)
	rewrite := stream && held.replaces(md)
	replace := !stream && held.replaces(md)
	var query url.Values
	var base []byte // vanguard's message, a GET's or, to replace, a POST's
	var err error
	if r.Method == http.MethodGet {
		// A Connect GET, whose message is the query's, in unpadded
		// base64url, as vanguard writes it with a binary codec.
		query = r.URL.Query()
		if base, err = base64.RawURLEncoding.DecodeString(query.Get("message")); err != nil {
			_ = connect.NewErrorWriter().Write(w, r, connect.NewError(connect.CodeInternal, fmt.Errorf("kit: the message of vanguard's call: %w", err)))
			return nil
		}
	} else if replace && r.Body != nil {
		// Read to vanguard's end: an error it has after is for the
		// vanguardBody that reads the body next to return.
		if base, err = io.ReadAll(r.Body); err != nil {
			_ = connect.NewErrorWriter().Write(w, r, err)
			return nil
		}
	}
	if replace {
		if err = proto.Unmarshal(base, msg); err != nil {
			_ = connect.NewErrorWriter().Write(w, r, connect.NewError(connect.CodeInternal, fmt.Errorf("kit: the message of vanguard's call: %w", err)))
			return nil
		}
		base = nil // msg has it
	}
	if err = held.apply(msg); err != nil {
		_ = connect.NewErrorWriter().Write(w, r, connect.NewError(connect.CodeInvalidArgument, err))
		return nil
	}
	extra, err := proto.Marshal(msg)
	if err != nil {
		_ = connect.NewErrorWriter().Write(w, r, connect.NewError(connect.CodeInternal, fmt.Errorf("kit: the query parameters: %w", err)))
		return nil
	}
	if len(extra) == 0 && !replace && !rewrite {
		return r
	}
	r = r.WithContext(r.Context())
	if query != nil {
		query.Set("message", base64.RawURLEncoding.EncodeToString(append(base, extra...)))
		u := *r.URL
		u.RawQuery = query.Encode()
		r.URL = &u
		return r
	}
	body := r.Body
	if body == nil {
		body = http.NoBody
	}
	if rewrite {
		r.Body, r.ContentLength = &firstMessageExtra{ReadCloser: body, extra: extra, rewrite: func(first []byte) ([]byte, error) {
			m := dynamicpb.NewMessage(md)
			if err := proto.Unmarshal(first, m); err != nil {
				return nil, err
			}
			if err := held.apply(m); err != nil {
				return nil, err
			}
			// m holds copies of first's bytes: its encoding goes in
			// first's room (see firstMessageExtra.Read), where a new
			// one cost another copy of an upload's chunk.
			return proto.MarshalOptions{}.MarshalAppend(first[:0], m)
		}}, -1
		return r
	}
	if stream {
		r.Body, r.ContentLength = &firstMessageExtra{ReadCloser: body, extra: extra}, -1
		return r
	}
	// To replace, the body is read: extra, after it, is the message.
	r.Body, r.ContentLength = &vanguardBody{ReadCloser: body, extra: extra}, -1
	return r
}

// firstMessageExtra is the body of a streaming call vanguard makes, its
// messages in the envelopes of the Connect streaming protocol, with extra,
// the encoded query parameters that [withHeld] sets, merged into the
// first, the one vanguard set the query in: extra follows that message
// in its envelope, whose length grows by extra's. (Appended after the
// envelope, extra was read as the prefix of a second one, and the call
// failed, ResourceExhausted, on the size it read there.) With rewrite,
// the first message is read whole (vanguard holds it whole already, under
// its buffer's limit) and rewrite's result replaces it, in an envelope of
// its length; what follows is not read ahead.
type firstMessageExtra struct {
	io.ReadCloser
	extra   []byte
	rewrite func(first []byte) ([]byte, error)
	first   io.Reader // the first envelope with extra; nil until read
	done    bool      // the first envelope is read: the rest is the body's
}

func (b *firstMessageExtra) Read(p []byte) (int, error) {
	if b.done {
		return b.ReadCloser.Read(p)
	}
	if b.first == nil {
		var prefix [5]byte
		n, err := io.ReadFull(b.ReadCloser, prefix[:])
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			// No whole prefix: passed on as it came, for connect to refuse.
			b.first = bytes.NewReader(prefix[:n])
		case err != nil:
			b.done = true
			return 0, err
		case prefix[0] != 0:
			// Compressed (or an end of stream): its bytes are no
			// message kit can add to. Vanguard sends none such to the
			// handler (kit gives it no target compression, and it
			// inflates a REST body itself); failed loudly should that
			// change, where the parameters went into gzip's bytes.
			b.done = true
			return 0, connect.NewError(connect.CodeInternal, fmt.Errorf("kit: vanguard's first message is flagged %#x, where kit sets the query parameters", prefix[0]))
		case b.rewrite != nil:
			// Read into a buffer of the message's size (vanguard's
			// prefix, under its limit), with room for the parameters'
			// encoding, extra, which the rewritten message is seldom
			// longer by: a bytes.Buffer grown to it cost twice the
			// size of a 4 MiB upload's chunk.
			size := int(binary.BigEndian.Uint32(prefix[1:]))
			first := make([]byte, size, size+len(b.extra))
			if _, err := io.ReadFull(b.ReadCloser, first); err != nil {
				b.done = true
				return 0, err
			}
			msg, err := b.rewrite(first)
			if err != nil {
				b.done = true
				return 0, connect.NewError(connect.CodeInternal, fmt.Errorf("kit: the query parameters in vanguard's first message: %w", err))
			}
			binary.BigEndian.PutUint32(prefix[1:], uint32(len(msg)))
			b.first = io.MultiReader(bytes.NewReader(prefix[:]), bytes.NewReader(msg))
		default:
			size := binary.BigEndian.Uint32(prefix[1:])
			binary.BigEndian.PutUint32(prefix[1:], size+uint32(len(b.extra)))
			b.first = io.MultiReader(bytes.NewReader(prefix[:]), io.LimitReader(b.ReadCloser, int64(size)), bytes.NewReader(b.extra))
		}
	}
	n, err := b.first.Read(p)
	if errors.Is(err, io.EOF) {
		b.done = true
		if n == 0 {
			return b.ReadCloser.Read(p)
		}
		return n, nil
	}
	return n, err
}

// sentQueryKey is the context key of a REST call's query as it came,
// escaped, when vanguard would set none of it (see [lostQuery]).
type sentQueryKey struct{}

// lostQuery says whether vanguard v0.4.0 sets none of the query of a
// REST call whose header (as kit gives it to vanguard) is h: it decodes
// the request message (a unary call's, a stream's first) after it has
// cleared the request's query (transcoder.go, operation.handle), and
// sets the query only when it parsed it before, which it does to
// classify a request without a Content-Type or with one of
// "application/" (classifyRequest). Only a route whose body is a
// google.api.HttpBody takes another Content-Type: an upload, unary or
// streamed, of text/plain or image/png lost its query (?mask=aB never
// reached the method). On such a call kit sets every parameter of the
// query itself (see [wholeQuery]).
func lostQuery(h http.Header) bool {
	types := h["Content-Type"]
	return len(types) == 1 && !strings.HasPrefix(types[0], "application/")
}

// heldFrom returns the query parameters held from the REST call whose context
// is ctx, if any.
func heldFrom(ctx context.Context) (heldQuery, bool) {
	q, ok := ctx.Value(heldQueryKey{}).(heldQuery)
	return q, ok
}
