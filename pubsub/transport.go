package pubsub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"connectrpc.com/connect"
)

// transport is the connect.HTTPClient of a Publisher: instead of sending the
// unary request over the network, it hands its body and headers to the
// broker as a message and answers with a synthetic response. So the client
// chain runs unmodified around each publish, and the headers it sets
// (traceparent, auth) travel with the message.
type transport struct {
	broker    Broker
	topic     string
	typeName  []string // the HeaderMessageType value, shared read-only
	response  http.Header
	emptyBody string
}

func newTransport(b Broker, topic, typeName string, json bool) *transport {
	t := &transport{broker: b, topic: topic, typeName: []string{typeName}}
	ct := ContentTypeProto
	if json {
		ct, t.emptyBody = ContentTypeJSON, "{}"
	}
	t.response = http.Header{HeaderContentType: []string{ct}}
	return t
}

// Do implements connect.HTTPClient.
func (t *transport) Do(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	call, _ := ctx.Value(publishCallKey{}).(*publishCall)
	if call == nil {
		return nil, connect.NewError(connect.CodeInternal, errors.New("pubsub: publisher client used outside Publish"))
	}
	ct := r.Header.Get(HeaderContentType)
	if ct != ContentTypeProto && ct != ContentTypeJSON {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf(
			"pubsub: publish request has content type %q: the publisher's client options must keep the Connect protocol (no connect.WithGRPC or WithGRPCWeb)", ct))
	}
	data, err := readBody(r)
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("pubsub: failed to read publish request body: %w", err))
	}
	msg := &Message{
		ID:          call.info.MessageID,
		Deduplicate: call.dedup,
		Topic:       t.topic,
		Header:      messageHeader(r.Header, t.typeName),
		Data:        data,
	}
	conf, err := t.broker.Publish(ctx, msg)
	if err == nil && !call.async {
		err = conf.Wait(ctx)
	}
	if err != nil {
		return nil, brokerError(ctx, err)
	}
	call.conf = conf
	var body io.ReadCloser = http.NoBody
	if t.emptyBody != "" {
		body = io.NopCloser(strings.NewReader(t.emptyBody))
	}
	return &http.Response{
		Status:        "200 OK",
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        t.response,
		Body:          body,
		ContentLength: int64(len(t.emptyBody)),
		Request:       r,
	}, nil
}

func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return []byte{}, nil
	}
	defer r.Body.Close()
	if r.ContentLength >= 0 {
		data := make([]byte, r.ContentLength)
		_, err := io.ReadFull(r.Body, data)
		return data, err
	}
	return io.ReadAll(r.Body)
}

// messageHeader turns the request's headers into the message's: it deletes
// those of the Connect protocol and of HTTP itself, and adds the message
// type. The request is done with them: connect sent it.
func messageHeader(h http.Header, typeName []string) http.Header {
	for _, k := range [...]string{"Connect-Protocol-Version", "Connect-Timeout-Ms", "Connect-Accept-Encoding",
		"Accept-Encoding", "User-Agent", "Content-Length", "Host"} {
		delete(h, k)
	}
	h[HeaderMessageType] = typeName
	return h
}

// brokerError gives a broker's error the Connect code a caller can act on.
func brokerError(ctx context.Context, err error) error {
	var ce *connect.Error
	switch {
	case errors.As(err, &ce):
		return err
	case ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	default:
		return connect.NewError(connect.CodeUnavailable, err)
	}
}
