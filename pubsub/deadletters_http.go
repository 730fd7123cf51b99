package pubsub

import (
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// DeadLetterHandler returns an HTTP handler for operators to list, re-drive
// and delete the dead letters of b, meant for an admin listener. Mount it
// with kit's Server.MountAdmin, which strips the prefix: it checks no
// credentials of its own, so never serve it on a public port.
//
//	GET    /?topic=T&subscription=S   list (oldest first; filters optional)
//	GET    /?limit=N&after=R          the page of N (default 100, at most 1000) after ref R
//	POST   /redrive?ref=R             re-drive one dead letter
//	POST   /redrive?all=true&topic=T&subscription=S   re-drive every match
//	DELETE /?ref=R                    delete one dead letter
//
// With ref, topic and subscription narrow the match: a ref outside them is
// not found (404). A request naming both ref and all, a parameter twice, or
// a parameter its endpoint does not take is refused (400): a typo must not
// widen a re-drive to every dead letter.
//
// A listing answers {"dead_letters": [...], "next": R} with at most limit
// dead letters; next, present when more are left, is the after of the next
// page. A broker that is not a [DeadLetterPager] pages by skipping its
// listing up to the ref after names: if that dead letter was deleted
// meanwhile, the page is empty.
//
// A listed dead letter shows its message's id, topic, headers and payload,
// the subscription that gave up and the message type its handler takes, the
// reason, the attempts, the last error and its ref. A JSON payload shows as
// it is. A binary payload shows as protobuf JSON when it decodes as its type
// (the one its [HeaderMessageType] names, else the handler's, if the broker
// stored that) and that type is linked into the program; else as base64.
// Fields the program's version of the type does not know (a newer
// version's, during a rolling deploy) have no JSON names there: such a
// payload shows as the JSON of the fields the program knows, with
// payload_unknown_fields true, and whole in base64. Writes answer
// {"redriven": n} or {"deleted": 1}.
func DeadLetterHandler(b Broker) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		list, next, err := listPage(r, b)
		reply(w, err, deadLetterPage{DeadLetters: list, Next: next})
	})
	mux.HandleFunc("POST /redrive", func(w http.ResponseWriter, r *http.Request) {
		n, err := matching(r, b, func(dl *DeadLetter) error { return b.Redrive(r.Context(), dl) })
		reply(w, err, map[string]int{"redriven": n})
	})
	mux.HandleFunc("DELETE /{$}", func(w http.ResponseWriter, r *http.Request) {
		if q, err := query(r, "ref", "all", "topic", "subscription"); err != nil {
			reply(w, err, nil)
			return
		} else if q.Has("all") || q.Get("ref") == "" {
			reply(w, badRequest("delete removes one dead letter: name it with ?ref=<ref>, without all"), nil)
			return
		}
		n, err := matching(r, b, func(dl *DeadLetter) error { return b.DeleteDeadLetter(r.Context(), dl) })
		reply(w, err, map[string]int{"deleted": n})
	})
	return mux
}

// errNoMatch answers 404: no dead letter has the ref asked for.
var errNoMatch = errors.New("no dead letter with that ref")

// query parses r's query, refusing one that does not parse (url.Query
// would drop the pair it cannot read, a filter among them), a parameter
// other than allowed or given twice, and a topic or subscription filter
// with a subject wildcard or white space, which would match more than it
// names.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest(fmt.Sprintf("query %q: %v", r.URL.RawQuery, err))
	}
	for k, v := range q {
		if !slices.Contains(allowed, k) {
			return nil, badRequest(fmt.Sprintf("unknown parameter %q: this endpoint takes %s", k, strings.Join(allowed, ", ")))
		}
		if len(v) > 1 {
			return nil, badRequest(fmt.Sprintf("parameter %q given %d times: give it once", k, len(v)))
		}
	}
	if t := q.Get("topic"); strings.ContainsAny(t, "*> \t\r\n") {
		return nil, badRequest(fmt.Sprintf("topic %q: name one topic, without wildcards", t))
	}
	if sub := q.Get("subscription"); strings.ContainsAny(sub, ".*> \t\r\n") {
		return nil, badRequest(fmt.Sprintf("subscription %q: name one subscription, without dots or wildcards", sub))
	}
	return q, nil
}

// matching applies do to the dead letter ?ref= names, or, with ?all=true,
// to every one the topic and subscription filters match.
func matching(r *http.Request, b Broker, do func(*DeadLetter) error) (int, error) {
	q, err := query(r, "ref", "all", "topic", "subscription")
	if err != nil {
		return 0, err
	}
	ref, all := q.Get("ref"), q.Get("all") == "true"
	switch {
	case q.Has("ref") && q.Has("all"):
		return 0, badRequest("ref and all conflict: name one dead letter with ?ref=<ref>, or all that match with ?all=true[&topic=T][&subscription=S]")
	case q.Has("all") && !all:
		return 0, badRequest(fmt.Sprintf("all=%q: to name all that match, use ?all=true", q.Get("all")))
	case ref == "" && !all:
		return 0, badRequest("name one dead letter with ?ref=<ref>, or all that match with ?all=true[&topic=T][&subscription=S]")
	}
	n := 0
	err = eachDeadLetter(r, q, b, func(dl *DeadLetter) error {
		if !all && dl.Ref != ref {
			return nil
		}
		if err := do(dl); err != nil {
			return fmt.Errorf("dead letter %s: %w", dl.Ref, err)
		}
		n++
		return nil
	})
	if err == nil && n == 0 && !all {
		err = errNoMatch
	}
	return n, err
}

// Page sizes of a listing: a page is bounded so that a backlog of dead
// letters cannot make one answer as large as the backlog.
const (
	defaultPage = 100
	maxPage     = 1000
)

type deadLetterPage struct {
	DeadLetters []deadLetterJSON `json:"dead_letters"`
	// Next is the ref to list after for the next page, when there is one.
	Next string `json:"next,omitempty"`
}

// listPage lists up to ?limit= dead letters after the one ?after= names,
// and the ref to give as after for the next page, if any is left.
func listPage(r *http.Request, b Broker) (list []deadLetterJSON, next string, err error) {
	q, err := query(r, "topic", "subscription", "limit", "after")
	if err != nil {
		return nil, "", err
	}
	limit := defaultPage
	if v := q.Get("limit"); q.Has("limit") {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxPage {
			return nil, "", badRequest(fmt.Sprintf("limit=%q: give a number of dead letters from 1 to %d", v, maxPage))
		}
	}
	list = []deadLetterJSON{}
	after := q.Get("after")
	var all iter.Seq2[*DeadLetter, error]
	if p, ok := b.(DeadLetterPager); ok {
		all, after = p.DeadLettersAfter(r.Context(), q.Get("topic"), q.Get("subscription"), after), ""
	} else {
		all = b.DeadLetters(r.Context(), q.Get("topic"), q.Get("subscription"))
	}
	for dl, err := range all {
		switch {
		case errors.Is(err, ErrBadRef):
			return nil, "", badRequest(fmt.Sprintf("after=%q: %v", q.Get("after"), err))
		case err != nil:
			return nil, "", err
		case after != "": // a broker that cannot page: skip up to after
			if dl.Ref == after {
				after = ""
			}
		case len(list) == limit:
			return list, list[limit-1].Ref, nil
		default:
			list = append(list, toJSON(dl))
		}
	}
	return list, "", nil
}

func eachDeadLetter(r *http.Request, q url.Values, b Broker, fn func(*DeadLetter) error) error {
	for dl, err := range b.DeadLetters(r.Context(), q.Get("topic"), q.Get("subscription")) {
		if err != nil {
			return err
		}
		if err := fn(dl); err != nil {
			return err
		}
	}
	return nil
}

type badRequest string

func (e badRequest) Error() string { return string(e) }

func reply(w http.ResponseWriter, err error, body any) {
	var bad badRequest
	switch {
	case errors.As(err, &bad):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case errors.Is(err, errNoMatch):
		http.Error(w, err.Error(), http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	}
}

type deadLetterJSON struct {
	Ref          string              `json:"ref"`
	ID           string              `json:"id"`
	Topic        string              `json:"topic"`
	Subscription string              `json:"subscription"`
	HandlerType  string              `json:"handler_type,omitempty"`
	Reason       Reason              `json:"reason"`
	Attempts     int                 `json:"attempts"`
	Error        string              `json:"error"`
	Time         time.Time           `json:"time"`
	Header       map[string][]string `json:"header"`
	Payload      json.RawMessage     `json:"payload,omitempty"`
	// PayloadUnknownFields says that Payload, the JSON of a binary
	// payload, lacks fields that the program's version of the type does
	// not know; PayloadBase64 then holds the whole payload.
	PayloadUnknownFields bool   `json:"payload_unknown_fields,omitempty"`
	PayloadBase64        []byte `json:"payload_base64,omitempty"`
}

func toJSON(dl *DeadLetter) deadLetterJSON {
	out := deadLetterJSON{
		Ref: dl.Ref, ID: dl.Message.ID, Topic: dl.Message.Topic, Subscription: dl.Subscription, HandlerType: dl.HandlerType,
		Reason: dl.Reason, Attempts: dl.Attempts, Error: dl.Error, Time: dl.Time, Header: dl.Message.Header,
	}
	payload, complete := payloadJSON(dl)
	out.Payload = payload
	if payload == nil || !complete {
		out.PayloadBase64 = dl.Message.Data
	}
	out.PayloadUnknownFields = payload != nil && !complete
	return out
}

// payloadJSON renders the payload as JSON: a JSON payload as it is, a
// binary one as protobuf JSON when its type is known and it decodes, its
// type being the one its header names, else the one the subscription's
// handler takes. complete is false when the JSON lacks fields of the
// payload that the program's version of the type does not know.
func payloadJSON(dl *DeadLetter) (payload json.RawMessage, complete bool) {
	m := &dl.Message
	ct := ContentTypeProto
	if h := m.Header.Get(HeaderContentType); h != "" {
		ct = payloadContentType(h)
	}
	switch ct {
	case ContentTypeJSON:
		// As it is: protojson would drop the fields the program does not
		// know, and refuse to decode them without DiscardUnknown.
		if !utf8.Valid(m.Data) || !json.Valid(m.Data) {
			return nil, false
		}
		return m.Data, true
	case ContentTypeProto:
	default:
		return nil, false
	}
	typeName := m.Header.Get(HeaderMessageType)
	if typeName == "" {
		typeName = dl.HandlerType
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(typeName))
	if err != nil {
		return nil, false
	}
	msg := mt.New().Interface()
	if err := proto.Unmarshal(m.Data, msg); err != nil {
		return nil, false
	}
	b, err := protojson.Marshal(msg)
	if err != nil {
		return nil, false
	}
	return b, !hasUnknownFields(msg.ProtoReflect())
}

// hasUnknownFields reports whether m or a message in it has unknown fields.
func hasUnknownFields(m protoreflect.Message) bool {
	if len(m.GetUnknown()) > 0 {
		return true
	}
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if k := fd.MapValue().Kind(); k == protoreflect.MessageKind || k == protoreflect.GroupKind {
				v.Map().Range(func(_ protoreflect.MapKey, v protoreflect.Value) bool {
					found = hasUnknownFields(v.Message())
					return !found
				})
			}
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			if fd.IsList() {
				for i, l := 0, v.List(); i < l.Len() && !found; i++ {
					found = hasUnknownFields(l.Get(i).Message())
				}
			} else {
				found = hasUnknownFields(v.Message())
			}
		}
		return !found
	})
	return found
}
