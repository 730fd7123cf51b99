package natsjs_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connectkit/connectkit/pubsub/natsjs"
)

// natsGoPubAckError is how nats.go's jetstream (v1.56.0,
// handleAsyncReply) reads a PubAck, to compare the broker's with.
func natsGoPubAckError(data []byte) error {
	var pa struct {
		*jetstream.PubAck
		Error *jetstream.APIError `json:"error,omitempty"`
	}
	if err := json.Unmarshal(data, &pa); err != nil {
		return jetstream.ErrInvalidJSAck
	}
	if pa.Error != nil {
		return pa.Error
	}
	if pa.PubAck == nil || pa.PubAck.Stream == "" {
		return jetstream.ErrInvalidJSAck
	}
	return nil
}

// Every form of PubAck that nats-server sends (its hand-made
// acknowledgements, with a domain, a duplicate, streams named with the
// characters JSON escapes, and its errors, with a stream field) reads as
// nats.go's jetstream reads it, but for a stream named with a control
// character, whose acknowledgement nats.go cannot read.
func TestPubAckFormsOfTheServer(t *testing.T) {
	t.Parallel()
	srv := natsjs.StartTestServer(t, &server.Options{JetStreamDomain: "hub"})
	js := adminJS(t, srv.ClientURL())
	nc := js.Conn()
	stream := func(name, subject string, limit int64) {
		t.Helper()
		cfg := jetstream.StreamConfig{Name: name, Subjects: []string{subject}, MaxMsgs: -1}
		if limit > 0 {
			cfg.MaxMsgs, cfg.Discard = limit, jetstream.DiscardNew
		}
		if _, err := js.CreateStream(t.Context(), cfg); err != nil {
			t.Fatalf("stream %q: %v", name, err)
		}
	}
	stream("plain", "plain", 0)
	stream(`quote"d`, "quoted", 0)
	stream("control\x01", "control", 0)
	stream("ünïcödé-\u200b", "unicode", 0)
	stream("full", "full", 1)
	tests := []struct {
		name    string
		subject string
		header  nats.Header
		code    jetstream.ErrorCode // 0: stored
		// natsGoInvalid: nats.go reads the acknowledgement as invalid
		natsGoInvalid bool
	}{
		{name: "stored, with the domain", subject: "plain"},
		{name: "first of an id", subject: "plain", header: nats.Header{"Nats-Msg-Id": {"d"}}},
		{name: "duplicate", subject: "plain", header: nats.Header{"Nats-Msg-Id": {"d"}}},
		{name: "stream named with a quote", subject: "quoted"},
		// nats-server writes the stream's name with Go's %q: \x01 is not
		// JSON, and nats.go takes the stored message for a failure.
		{name: "stream named with a control character", subject: "control", natsGoInvalid: true},
		{name: "stream named in unicode", subject: "unicode"},
		{name: "first in a full stream", subject: "full"},
		{name: "stream full", subject: "full", code: 10077},
		{name: "wrong expected stream", subject: "plain", header: nats.Header{"Nats-Expected-Stream": {"other"}}, code: 10060},
		{name: "wrong expected last sequence", subject: "plain", header: nats.Header{"Nats-Expected-Last-Sequence": {"1000"}}, code: 10071},
	}
	for _, tc := range tests { // in order: the duplicate follows the first
		reply, err := nc.RequestMsg(&nats.Msg{Subject: tc.subject, Header: tc.header, Data: []byte("x")}, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, want := natsjs.PubAckError(reply.Data), natsGoPubAckError(reply.Data)
		if tc.natsGoInvalid && errors.Is(want, jetstream.ErrInvalidJSAck) {
			want = nil
		}
		var gotAPI, wantAPI *jetstream.APIError
		switch {
		case tc.code == 0 && (got != nil || want != nil):
			t.Errorf("%s: %s: pubAckError %v, nats.go %v, want both stored", tc.name, reply.Data, got, want)
		case tc.code != 0 && (!errors.As(got, &gotAPI) || !errors.As(want, &wantAPI) || gotAPI.ErrorCode != tc.code || *gotAPI != *wantAPI):
			t.Errorf("%s: %s: pubAckError %v, nats.go %v, want both the API error %d", tc.name, reply.Data, got, want, tc.code)
		default:
			t.Logf("%s: %s", tc.name, reply.Data)
		}
	}
}
