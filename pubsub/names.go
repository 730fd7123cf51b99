package pubsub

import (
	"fmt"
	"mime"
	"strings"
)

// Headers that pubsub sets on every message, besides those of the client
// chain. Brokers store them with the message.
const (
	// HeaderContentType is the payload's encoding: "application/proto"
	// (the default) or "application/json".
	HeaderContentType = "Content-Type"
	// HeaderMessageType is the full protobuf name of the payload's type,
	// such as "example.v1.ProfileChanged".
	HeaderMessageType = "Pubsub-Type"
)

// HeaderOriginalTime is the header in which a subscriber that dead-letters
// a message keeps when the broker first stored it (RFC 3339 with
// nanoseconds, UTC), unless the message has it already (a re-drive that
// failed again): a re-drive publishes it with the message, and
// [MessageInfo].Time of the re-driven message reports it. Only a
// re-drive's counts: a [Publisher] drops the one its client chain sets,
// and kit's brokers drop it from every message but a re-drive (natsjs from
// producers that are not pubsub as well), so that a publish cannot forge
// when the broker stored its message.
const HeaderOriginalTime = "Pubsub-Original-Time"

// headerContentEncoding names a payload's compression, which a subscriber
// refuses: pubsub does not decompress messages.
const headerContentEncoding = "Content-Encoding"

// Content types of a message payload. A subscriber matches them without
// regard to case, as RFC 9110 has it, takes JSON with charset=utf-8, and
// takes IANA's application/protobuf and application/protobuf+json (and
// their x- aliases) as these.
const (
	ContentTypeProto = "application/proto"
	ContentTypeJSON  = "application/json"
)

// payloadContentType returns which of ContentTypeProto and ContentTypeJSON
// the Content-Type ct names, or "" for neither. The forms that pubsub and
// connect write match without parsing; others are parsed, since media
// types and the charset value are case-insensitive. IANA's names, which
// producers in other languages write, are taken too: application/protobuf
// (aliases application/x-protobuf, application/x-protobuffer) for binary,
// application/protobuf+json (alias application/x-protobuf+json) for JSON.
func payloadContentType(ct string) string {
	switch ct {
	case ContentTypeProto:
		return ContentTypeProto
	case ContentTypeJSON, "application/json; charset=utf-8":
		return ContentTypeJSON
	}
	mediaType, params, err := mime.ParseMediaType(ct) // lower-cases the type and the parameter names
	if err != nil {
		return ""
	}
	switch mediaType {
	case "application/protobuf", "application/x-protobuf", "application/x-protobuffer":
		mediaType = ContentTypeProto
	case "application/protobuf+json", "application/x-protobuf+json":
		mediaType = ContentTypeJSON
	}
	switch {
	case mediaType == ContentTypeProto && len(params) == 0:
		return ContentTypeProto
	case mediaType == ContentTypeJSON && (len(params) == 0 || len(params) == 1 && strings.EqualFold(params["charset"], "utf-8")):
		return ContentTypeJSON
	}
	return ""
}

// Procedure returns the procedure under which the interceptor chain sees the
// deliveries of a subscription: "/<topic>/<subscription>", such as
// "/profiles.changed/audit". Like an RPC procedure it has two parts: an
// interceptor that knows nothing of messages (otelconnect, say) records a
// delivery as a call of method <subscription> of service <topic>. The
// Logging, Metrics and Tracing interceptors of connectkit's interceptors
// package tell deliveries from RPCs and record them as messages instead
// ("message" log lines, pubsub_* metrics rather than grpc_server_*,
// messaging spans).
func Procedure(topic, subscription string) string {
	return "/" + topic + "/" + subscription
}

// PublishProcedure returns the procedure under which the interceptor chain
// sees the publishes to a topic: "/<topic>/publish", such as
// "/profiles.changed/publish".
func PublishProcedure(topic string) string {
	return "/" + topic + "/publish"
}

// ValidateTopic reports whether topic can name a topic on every broker:
// dot-separated tokens of ASCII letters, digits, '-' and '_' (a NATS subject
// without wildcards), at most 200 bytes, not starting with "_pubsub". A
// topic is one concrete name: a wildcard token ("*", ">", and AMQP's "#"
// and MQTT's "+") is refused with what to do instead, and a '/' (MQTT's
// separator) with the dotted topic to write.
func ValidateTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("pubsub: topic is empty")
	}
	if len(topic) > 200 {
		return fmt.Errorf("pubsub: topic %q is longer than 200 bytes", topic)
	}
	if strings.HasPrefix(topic, "_pubsub") {
		return fmt.Errorf("pubsub: topic %q starts with _pubsub, which is reserved", topic)
	}
	for token := range strings.SplitSeq(topic, ".") {
		if token == "" {
			return fmt.Errorf("pubsub: topic %q has an empty token (leading, trailing or double dot)", topic)
		}
		if wildcard(token) {
			return wildcardError(topic, token, "")
		}
		if strings.Contains(token, "/") {
			return slashError(topic, token)
		}
		if !validName(token) {
			return fmt.Errorf("pubsub: topic %q: token %q may hold only ASCII letters, digits, '-' and '_'", topic, token)
		}
	}
	return nil
}

// wildcardError is ValidateTopic's error for topic, whose token is a
// wildcard, with more said after.
func wildcardError(topic, token, more string) error {
	return fmt.Errorf("pubsub: topic %q: %q is a wildcard, and a topic is one concrete name, which a publisher and each subscriber name whole: subscribe once per topic (a subscriber per topic, each with its message type), or publish the related events to one topic with a message that holds them (a oneof)%s", topic, token, more)
}

// slashError is ValidateTopic's error for topic, whose token holds a '/',
// the separator of MQTT topics (and of paths), which users of those write
// where a NATS subject has '.': it says so, where the generic "may hold
// only" left them to guess, and names the wildcard of one ("orders/+").
// The dotted topic it suggests drops a leading or trailing '/' (MQTT's
// "/orders/created"); when even that is no topic, the error says why.
func slashError(topic, token string) error {
	const sep = ": separate a topic's tokens with '.', not '/'"
	for part := range strings.SplitSeq(token, "/") {
		if wildcard(part) {
			return wildcardError(topic, part, "; and"+strings.TrimPrefix(sep, ":"))
		}
	}
	dotted := strings.ReplaceAll(strings.Trim(topic, "/"), "/", ".")
	err := ValidateTopic(dotted) // no '/' left: no recursion
	if err == nil {
		return fmt.Errorf("pubsub: topic %q%s, as in %q", topic, sep, dotted)
	}
	return fmt.Errorf("pubsub: topic %q%s; written with '.', %s", topic, sep, strings.TrimPrefix(err.Error(), "pubsub: "))
}

// ValidateSubscription reports whether name can name a subscription on every
// broker: ASCII letters, digits, '-' and '_' (a JetStream durable consumer
// name), at most 100 bytes.
func ValidateSubscription(name string) error {
	if name == "" {
		return fmt.Errorf("pubsub: subscription name is empty")
	}
	if len(name) > 100 {
		return fmt.Errorf("pubsub: subscription name %q is longer than 100 bytes", name)
	}
	if !validName(name) {
		return fmt.Errorf("pubsub: subscription name %q may hold only ASCII letters, digits, '-' and '_'", name)
	}
	return nil
}

// wildcard reports whether token is a wildcard of NATS ("*", ">"), of
// AMQP ("#") or of MQTT ("+"), which users of those brokers (and of
// Watermill on them) write for "every topic under".
func wildcard(token string) bool {
	return token == "*" || token == ">" || token == "#" || token == "+"
}

func validName(s string) bool {
	for i := range len(s) {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return s != ""
}
