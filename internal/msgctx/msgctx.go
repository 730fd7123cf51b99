// Package msgctx carries, in a context, what package pubsub tells the
// interceptors about a message operation that it presents to them as a unary
// call: the interceptors read it to log, count and trace deliveries and
// publishes with messaging semantics, without importing pubsub.
//
// It is internal because only pubsub may put an [Info] in a context: an
// exported key would let any caller pass an RPC off as a message delivery.
package msgctx

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
)

// Operation is what is being done with a message.
type Operation string

const (
	// Publish is a message being published (OpenTelemetry span kind PRODUCER).
	Publish Operation = "publish"
	// Process is a delivered message being handled (span kind CONSUMER).
	Process Operation = "process"
)

// Outcome is what happens to a delivery once its handler returns.
type Outcome string

const (
	// Ack: the handler succeeded; the message is acknowledged.
	Ack Outcome = "ack"
	// Retry: the handler failed; the message is redelivered after a backoff.
	Retry Outcome = "retry"
	// DeadLetter: the message is moved to the dead-letter destination.
	DeadLetter Outcome = "dead_letter"
)

// Info describes one message operation.
type Info struct {
	Operation    Operation
	System       string // messaging system, as OpenTelemetry's messaging.system: "nats", "mem"
	Topic        string // destination subject or topic
	Subscription string // durable consumer group; empty when publishing
	MessageID    string // broker-level message id (deduplication key)
	MessageType  string // full protobuf name of the payload
	Attempt      int    // delivery attempt, from 1; 0 when publishing
	MaxAttempts  int    // attempts before dead-lettering; 0 means unlimited
	// Server returns the host:port of the broker's server the message goes
	// to or comes from, "" when there is none now; nil when the broker has
	// no server over the network. Tracing asks it only for sampled spans.
	Server func() string
	// Permanent is set by the handler adapter when the handler's error was
	// marked permanent: the delivery is dead-lettered without retries.
	Permanent bool
	// Start is when pubsub began to run a delivery through the chain, the
	// clock read that its handler's deadline counts from; zero for a
	// publish. Logging and Metrics time a delivery from it instead of
	// reading the clock each: a time.Now costs 65–80 ns on the VMs
	// measured (BENCHMARKS.md section 43).
	Start time.Time
}

type key struct{}

// NewContext returns ctx carrying info.
func NewContext(ctx context.Context, info *Info) context.Context {
	return context.WithValue(ctx, key{}, info)
}

// IsKey reports whether k is the key under which a context carries an Info:
// context types of package pubsub answer it in their Value method, which
// saves the allocation of a context.WithValue per message.
func IsKey(k any) bool { return k == (key{}) }

// FromContext returns the Info in ctx, or nil when ctx is not a message
// operation.
func FromContext(ctx context.Context) *Info {
	info, _ := ctx.Value(key{}).(*Info)
	return info
}

// ForCall returns the Info in ctx when the call of spec is the message
// operation that it describes (a publish is a client call of
// "/<topic>/publish", a delivery a handler call of
// "/<topic>/<subscription>"), and nil otherwise. A handler's context carries
// its delivery's Info, and an RPC the handler makes with it is an RPC: the
// interceptors must trace, log and count it as one. A request without a
// procedure (one that an interceptor made with connect.NewRequest in place
// of pubsub's) is taken for the operation.
//
// A call served with a peer address (peer is the request's Peer) is an RPC
// that came over the network: package pubsub hands a delivery to the
// handler chain in process, with a request that has none. Its context is
// then not looked into: the Info is not there, and looking for a key that a
// context lacks walks all of it, once for each interceptor that asks
// (~200 instructions each; BENCHMARKS.md 1.28).
func ForCall(ctx context.Context, spec connect.Spec, peer connect.Peer) *Info {
	if !spec.IsClient && peer.Addr != "" {
		return nil
	}
	info := FromContext(ctx)
	if info == nil || spec.Procedure == "" {
		return info
	}
	last := info.Subscription
	if info.Operation == Publish {
		last = "publish"
	}
	p, topic := spec.Procedure, info.Topic
	if spec.IsClient != (info.Operation == Publish) ||
		len(p) != len(topic)+len(last)+2 || p[0] != '/' || p[1+len(topic)] != '/' ||
		p[1:1+len(topic)] != topic || p[2+len(topic):] != last {
		return nil
	}
	return info
}

// Request is implemented by the requests that package pubsub presents to
// the interceptor chains, one per publish and per delivery: each holds the
// Info of its operation.
type Request interface {
	MessageInfo() *Info
}

// ForRequest is ForCall(ctx, req.Spec(), req.Peer()), answered by req
// itself when it is one of pubsub's requests (a [Request]): such a request
// is the message operation its Info describes, and its context is not
// looked into. Each interceptor of the default chain asks once per call,
// and each answer from the context walked it, through the contexts the
// interceptors before had made, and copied the request's Spec
// (BENCHMARKS.md section 3). A request that an interceptor made in place of
// pubsub's is looked up in the context, as ForCall does.
func ForRequest(ctx context.Context, req connect.AnyRequest) *Info {
	if info := held(req); info != nil {
		return info
	}
	return ForCall(ctx, req.Spec(), req.Peer())
}

// ForRequestOf is ForRequest for a caller that has read req's spec and
// peer itself, as RequestID, Logging and Metrics do on every call: connect
// copies each on every Spec and Peer call, and ForRequest's own copies
// cost such a caller ~100 instructions a call (BENCHMARKS.md 1.38). A call
// served with a peer address is answered nil at once, before req is asked
// whether it is one of pubsub's, which hand their operations to the chains
// in process, without one (see [ForCall]).
func ForRequestOf(ctx context.Context, req connect.AnyRequest, spec *connect.Spec, peer *connect.Peer) *Info {
	if !spec.IsClient && peer.Addr != "" {
		return nil
	}
	return forRequestOf(ctx, req, spec, peer) // apart, so that ForRequestOf inlines
}

func forRequestOf(ctx context.Context, req connect.AnyRequest, spec *connect.Spec, peer *connect.Peer) *Info {
	if info := held(req); info != nil {
		return info
	}
	return ForCall(ctx, *spec, *peer)
}

// held returns the Info req holds when it is one of pubsub's requests.
func held(req connect.AnyRequest) *Info {
	if r, ok := req.(Request); ok {
		return r.MessageInfo()
	}
	return nil
}

// Outcome classifies the result of handling a delivery. Errors a retry cannot
// fix (a bad or undecodable message, a missing handler, an error marked
// permanent) are dead-lettered at once; any other error is retried until
// MaxAttempts is reached.
func (i *Info) Outcome(err error) Outcome {
	if err == nil {
		return Ack
	}
	if i.Permanent || permanent(err) || (i.MaxAttempts > 0 && i.Attempt >= i.MaxAttempts) {
		return DeadLetter
	}
	return Retry
}

func permanent(err error) bool {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return false
	}
	switch ce.Code() {
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition,
		connect.CodeOutOfRange, connect.CodeUnimplemented:
		return true
	default:
		return false
	}
}
