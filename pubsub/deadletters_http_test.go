package pubsub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

func TestDeadLetterHandler(t *testing.T) {
	t.Parallel()
	broker := mem.New()
	t.Cleanup(func() { _ = broker.Close() })
	var fixed atomic.Bool
	handled := make(chan string, 10)
	sub, err := pubsub.NewSubscriber(broker, "pings", "picky", func(_ context.Context, msg *pingv1.PingRequest) error {
		if !fixed.Load() {
			return pubsub.Permanent(errors.New("cannot handle " + msg.GetText()))
		}
		handled <- msg.GetText()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](broker, "pings")
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"first", "second"} {
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(pubsub.DeadLetterHandler(broker))
	t.Cleanup(srv.Close)

	type listed struct {
		DeadLetters []struct {
			Ref, ID, Topic, Subscription, Reason, Error string
			Payload                                     map[string]any
		} `json:"dead_letters"`
	}
	list := func(query string) listed {
		t.Helper()
		res, err := http.Get(srv.URL + "/" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var l listed
		if err := json.NewDecoder(res.Body).Decode(&l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	do := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	var l listed
	pubsubtest.WaitFor(t, "two dead letters", func() bool { l = list("?subscription=picky"); return len(l.DeadLetters) == 2 })
	first, second := l.DeadLetters[0], l.DeadLetters[1] // handled concurrently: in either order
	if first.Payload["text"] != "first" {
		first, second = second, first
	}
	dl := first
	if dl.Topic != "pings" || dl.Reason != "permanent" || !strings.Contains(dl.Error, "cannot handle first") || dl.Payload["text"] != "first" {
		t.Errorf("dead letter %+v", dl)
	}
	if n := len(list("?subscription=other").DeadLetters); n != 0 {
		t.Errorf("filter by subscription: %d dead letters, want 0", n)
	}

	if code, body := do(http.MethodPost, "/redrive"); code != http.StatusBadRequest {
		t.Errorf("redrive without ref: %d %s, want 400", code, body)
	}
	if code, _ := do(http.MethodPost, "/redrive?ref=nope"); code != http.StatusNotFound {
		t.Errorf("redrive of an unknown ref: %d, want 404", code)
	}

	// The handler is fixed: re-drive the first, delete the second.
	fixed.Store(true)
	if code, body := do(http.MethodPost, "/redrive?ref="+dl.Ref); code != 200 || !strings.Contains(body, `"redriven":1`) {
		t.Fatalf("redrive: %d %s", code, body)
	}
	if got := <-handled; got != "first" {
		t.Errorf("re-driven message %q, want first", got)
	}
	if code, body := do(http.MethodDelete, "/?ref="+second.Ref); code != 200 || !strings.Contains(body, `"deleted":1`) {
		t.Fatalf("delete: %d %s", code, body)
	}
	if n := len(list("").DeadLetters); n != 0 {
		t.Errorf("%d dead letters left, want 0", n)
	}
}

// TestDeadLetterHandlerRefusesAmbiguousQueries checks that a write naming
// both one dead letter and all of them, or a parameter twice or misspelled,
// is refused and changes nothing.
func TestDeadLetterHandlerRefusesAmbiguousQueries(t *testing.T) {
	t.Parallel()
	broker := mem.New()
	t.Cleanup(func() { _ = broker.Close() })
	for _, id := range []string{"a", "b"} {
		dl := &pubsub.DeadLetter{Message: pubsub.Message{ID: id, Topic: "pings"}, Subscription: "s", Reason: pubsub.ReasonPermanent}
		if err := broker.DeadLetter(t.Context(), dl); err != nil {
			t.Fatal(err)
		}
	}
	var ref string
	for dl, err := range broker.DeadLetters(t.Context(), "", "") {
		if err != nil {
			t.Fatal(err)
		}
		ref = dl.Ref
	}
	srv := httptest.NewServer(pubsub.DeadLetterHandler(broker))
	t.Cleanup(srv.Close)
	tests := []struct {
		name, method, path, want string
	}{
		{name: "delete ref and all", method: http.MethodDelete, path: "/?ref=" + ref + "&all=true", want: "without all"},
		{name: "delete all", method: http.MethodDelete, path: "/?all=true", want: "without all"},
		{name: "redrive ref and all", method: http.MethodPost, path: "/redrive?ref=" + ref + "&all=true", want: "ref and all conflict"},
		{name: "redrive ref and all=false", method: http.MethodPost, path: "/redrive?ref=" + ref + "&all=false", want: "ref and all conflict"},
		{name: "redrive empty ref and all", method: http.MethodPost, path: "/redrive?ref=&all=true", want: "ref and all conflict"},
		{name: "redrive all=1", method: http.MethodPost, path: "/redrive?all=1", want: `all="1"`},
		{name: "redrive two refs", method: http.MethodPost, path: "/redrive?ref=" + ref + "&ref=" + ref, want: `"ref" given 2 times`},
		{name: "redrive two topics", method: http.MethodPost, path: "/redrive?all=true&topic=pings&topic=other", want: `"topic" given 2 times`},
		{name: "redrive misspelled filter", method: http.MethodPost, path: "/redrive?all=true&subscripton=s", want: `unknown parameter "subscripton"`},
		{name: "delete misspelled ref", method: http.MethodDelete, path: "/?ref=" + ref + "&sub=s", want: `unknown parameter "sub"`},
		{name: "list misspelled filter", method: http.MethodGet, path: "/?topc=pings", want: `unknown parameter "topc"`},
		{name: "redrive bad escape in filter", method: http.MethodPost, path: "/redrive?all=true&subscription=s%zz", want: "invalid URL escape"},
		{name: "redrive semicolon in filter", method: http.MethodPost, path: "/redrive?all=true&subscription=s;", want: "semicolon"},
		{name: "redrive wildcard subscription", method: http.MethodPost, path: "/redrive?all=true&subscription=*", want: "without dots or wildcards"},
		{name: "redrive dotted subscription", method: http.MethodPost, path: "/redrive?all=true&subscription=s.x", want: "without dots or wildcards"},
		{name: "redrive wildcard topic", method: http.MethodPost, path: "/redrive?all=true&topic=pings.%3E", want: "without wildcards"},
	}
	t.Cleanup(func() { // after every subtest
		n := 0
		for _, err := range broker.DeadLetters(context.Background(), "", "") {
			if err != nil {
				t.Error(err)
				return
			}
			n++
		}
		if n != 2 {
			t.Errorf("%d dead letters left after refused requests, want 2", n)
		}
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), tc.want) {
				t.Errorf("%s %s = %d %q, want 400 naming %q", tc.method, tc.path, res.StatusCode, body, tc.want)
			}
		})
	}
}

// TestDeadLetterHandlerShowsPayloadAsHandlerType checks that the payload of
// a dead letter without a type header shows as JSON of the type its
// subscription's handler takes.
func TestDeadLetterHandlerShowsPayloadAsHandlerType(t *testing.T) {
	t.Parallel()
	broker := mem.New()
	t.Cleanup(func() { _ = broker.Close() })
	sub, err := pubsub.NewSubscriber(broker, "untyped", "s", func(context.Context, *pingv1.PingRequest) error {
		return pubsub.Permanent(errors.New("no"))
	})
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	binary, err := proto.Marshal(&pingv1.PingRequest{Text: "binary"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*pubsub.Message{
		{ID: "binary", Data: binary},
		{ID: "json", Data: []byte(`{"text":"json"}`), Header: http.Header{pubsub.HeaderContentType: {"application/json; charset=UTF-8"}}},
	} {
		m.Topic = "untyped"
		publishRaw(t, broker, m)
	}
	srv := httptest.NewServer(pubsub.DeadLetterHandler(broker))
	t.Cleanup(srv.Close)
	var l struct {
		DeadLetters []struct {
			ID            string
			HandlerType   string `json:"handler_type"`
			Payload       map[string]any
			PayloadBase64 []byte `json:"payload_base64"`
		} `json:"dead_letters"`
	}
	pubsubtest.WaitFor(t, "two dead letters", func() bool {
		res, err := http.Get(srv.URL + "/?topic=untyped")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if err := json.NewDecoder(res.Body).Decode(&l); err != nil {
			t.Fatal(err)
		}
		return len(l.DeadLetters) == 2
	})
	for _, dl := range l.DeadLetters {
		if dl.Payload["text"] != dl.ID || dl.PayloadBase64 != nil {
			t.Errorf("dead letter %s shows payload %v, base64 %q; want JSON with text %q", dl.ID, dl.Payload, dl.PayloadBase64, dl.ID)
		}
		if dl.HandlerType != "connectkit.ping.v1.PingRequest" {
			t.Errorf("dead letter %s shows handler_type %q, want the handler's", dl.ID, dl.HandlerType)
		}
	}
}

// TestDeadLetterHandlerShowsFieldsOfANewerSchema checks that a payload with
// fields that the program's version of its type does not know (a newer
// version's, during a rolling deploy) shows without losing them: a JSON
// payload as it is, a binary one as the JSON of the fields the program
// knows, flagged, and in base64.
func TestDeadLetterHandlerShowsFieldsOfANewerSchema(t *testing.T) {
	t.Parallel()
	broker := mem.New()
	t.Cleanup(func() { _ = broker.Close() })
	fdp := protodesc.ToFileDescriptorProto(pingv1.File_connectkit_ping_v1_ping_proto)
	for _, m := range fdp.GetMessageType() {
		if m.GetName() == "PingRequest" {
			m.Field = append(m.Field, &descriptorpb.FieldDescriptorProto{
				Name: proto.String("region"), JsonName: proto.String("region"), Number: proto.Int32(4),
				Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			})
		}
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	md := fd.Messages().ByName("PingRequest")
	newer := dynamicpb.NewMessage(md)
	newer.Set(md.Fields().ByName("text"), protoreflect.ValueOfString("hello"))
	newer.Set(md.Fields().ByName("region"), protoreflect.ValueOfString("eu"))
	binary, err := proto.Marshal(newer)
	if err != nil {
		t.Fatal(err)
	}
	jsonData, err := protojson.Marshal(newer)
	if err != nil {
		t.Fatal(err)
	}
	for id, m := range map[string]pubsub.Message{
		"binary": {Data: binary, Header: http.Header{pubsub.HeaderContentType: {pubsub.ContentTypeProto}, pubsub.HeaderMessageType: {"connectkit.ping.v1.PingRequest"}}},
		"json":   {Data: jsonData, Header: http.Header{pubsub.HeaderContentType: {pubsub.ContentTypeJSON}, pubsub.HeaderMessageType: {"connectkit.ping.v1.PingRequest"}}},
	} {
		m.ID, m.Topic = id, "newer"
		if err := broker.DeadLetter(t.Context(), &pubsub.DeadLetter{Message: m, Subscription: "s", Reason: pubsub.ReasonPermanent}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(pubsub.DeadLetterHandler(broker))
	t.Cleanup(srv.Close)
	res, err := http.Get(srv.URL + "/?topic=newer")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var l struct {
		DeadLetters []struct {
			ID                   string
			Payload              map[string]any
			PayloadBase64        []byte `json:"payload_base64"`
			PayloadUnknownFields bool   `json:"payload_unknown_fields"`
		} `json:"dead_letters"`
	}
	if err := json.NewDecoder(res.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	if len(l.DeadLetters) != 2 {
		t.Fatalf("listed %d dead letters, want 2", len(l.DeadLetters))
	}
	for _, dl := range l.DeadLetters {
		switch dl.ID {
		case "json":
			if dl.Payload["text"] != "hello" || dl.Payload["region"] != "eu" {
				t.Errorf("JSON dead letter shows payload %v, base64 %q; want the payload as it is, with the newer field", dl.Payload, dl.PayloadBase64)
			}
		case "binary":
			if dl.Payload["text"] != "hello" || !dl.PayloadUnknownFields || string(dl.PayloadBase64) != string(binary) {
				t.Errorf("binary dead letter shows payload %v, unknown fields %v, base64 %q; want the known fields, the flag and the whole payload in base64",
					dl.Payload, dl.PayloadUnknownFields, dl.PayloadBase64)
			}
		}
	}
}

// TestDeadLetterHandlerPagesABrokerThatCannot checks the pages of a broker
// that is not a DeadLetterPager: the handler skips its listing up to after.
func TestDeadLetterHandlerPagesABrokerThatCannot(t *testing.T) {
	t.Parallel()
	broker := mem.New()
	t.Cleanup(func() { _ = broker.Close() })
	for i := range 3 {
		dl := &pubsub.DeadLetter{Message: pubsub.Message{ID: fmt.Sprint("m-", i), Topic: "t"}, Subscription: "s", Reason: pubsub.ReasonPermanent}
		if err := broker.DeadLetter(t.Context(), dl); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(pubsub.DeadLetterHandler(struct{ pubsub.Broker }{broker}))
	t.Cleanup(srv.Close)
	var ids []string
	for query, pages := "limit=1", 0; pages < 5; pages++ {
		resp, err := http.Get(srv.URL + "/?" + query)
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			DeadLetters []struct{ ID string } `json:"dead_letters"`
			Next        string                `json:"next"`
		}
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, dl := range p.DeadLetters {
			ids = append(ids, dl.ID)
		}
		if p.Next == "" {
			break
		}
		query = "limit=1&after=" + p.Next
	}
	if want := []string{"m-0", "m-1", "m-2"}; !slices.Equal(ids, want) {
		t.Errorf("pages of 1 listed %v, want %v", ids, want)
	}
}
