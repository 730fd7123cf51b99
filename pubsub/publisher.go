package pubsub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/validate"
	"github.com/connectkit/connectkit/internal/msgctx"
	"github.com/connectkit/connectkit/internal/ruled"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Publisher publishes messages of type M (a generated message struct, such
// as examplev1.ProfileChanged) to one topic. Each publish runs through the
// client interceptor chain of [WithClientOptions] as a unary call to
// [PublishProcedure](topic), whose request headers become the message's
// headers; the chain's outcome is the publish's.
//
// A Publisher is safe for concurrent use; concurrent publishes share the
// broker's window of unconfirmed messages.
type Publisher[M any] struct {
	system   string
	server   func() string // the broker's ServerAddress, when it has one
	topic    string
	typeName string
	chain    connect.UnaryFunc // the client chain, ending in the sender
	client   *connect.Client[M, emptypb.Empty]
	spec     connect.Spec // the request's, as connect's client sets them
	peer     connect.Peer
	header   [2][]string // the Content-Type and HeaderMessageType values, shared read-only
	ids      *idGenerator
	metrics  *metrics
}

// validatorBuildWarning is how long NewPublisher waits for protovalidate's
// validator to be built before it logs, at error, what may hold the build
// for good (see ruled.Watched), as kit.New does. The build takes a few ms.
var validatorBuildWarning = 10 * time.Second

// NewPublisher returns a publisher of M messages to topic on b. M must be a
// generated protobuf message struct (*M implements proto.Message).
//
// Messages are encoded as protobuf binary (or JSON with [WithJSON]) and
// validated with protovalidate (unless [WithoutValidation]). NewPublisher
// fails if connect rejects the options of [WithClientOptions], or if they
// change the protocol or the codec. When M holds rules, NewPublisher builds
// protovalidate's global validator unless something did before (kit.New
// does): a few ms, once a process. A build still running after 10 s logs
// so at error on [WithLogger]'s logger, naming what holds it (a proto file
// or type registered in protoregistry's global registries from another
// goroutine meanwhile, which deadlocks it) and the mend.
func NewPublisher[M any](b Broker, topic string, opts ...Option) (*Publisher[M], error) {
	if b == nil {
		return nil, errors.New("pubsub: NewPublisher: broker is nil")
	}
	if err := ValidateTopic(topic); err != nil {
		return nil, err
	}
	typeName, err := messageName[M]()
	if err != nil {
		return nil, err
	}
	cfg := newConfig(opts)
	m, err := newMetrics(cfg.registry)
	if err != nil {
		return nil, err
	}
	p := &Publisher[M]{
		system:   b.System(),
		server:   serverAddress(b),
		topic:    topic,
		typeName: typeName,
		ids:      newIDGenerator(),
		metrics:  m,
	}
	probe := &clientProbe{}
	clientOpts := make([]connect.ClientOption, 0, len(cfg.clientOptions)+4)
	clientOpts = append(clientOpts, connect.WithInterceptors(probe)) // outermost
	clientOpts = append(clientOpts, cfg.clientOptions...)
	if cfg.json {
		clientOpts = append(clientOpts, connect.WithProtoJSON())
	}
	if !cfg.noValidation {
		// Inside the chain, so that the chain logs and counts what it rejects;
		// protovalidate sees M only if M holds rules, so that a service whose
		// messages hold none never builds its validator.
		v := ruled.NewValidator(cfg.validator, &ruled.Types{})
		clientOpts = append(clientOpts, connect.WithInterceptors(validate.NewInterceptor(validate.WithValidator(v))))
		// Asked now, when M holds rules, so that protovalidate's global
		// validator is built here, as interceptors.Validation builds it
		// when kit.New makes the chain, and not at the first publish: its
		// build walks protoregistry.GlobalFiles and reads it again inside
		// the walk, so a file registered meanwhile deadlocked it (see
		// interceptors.Validation). An empty M may break its rules: the
		// answer does not matter. Watched, as kit.New's build is, so that a
		// NewPublisher held by it says why in an error line.
		_ = ruled.Watched(cfg.logger, validatorBuildWarning,
			"pubsub.NewPublisher: protovalidate's validator is still being built for the message type: "+
				"its build waits for good when a proto file or type is registered in protoregistry's global registries from another goroutine meanwhile; "+
				"register them before NewPublisher (and kit.New) or after it returns",
			"pubsub.NewPublisher: protovalidate's validator is built after all",
			[]any{"topic", topic, "type", typeName},
			func() error { return v.Validate(any(new(M)).(proto.Message)) })
	}
	// Innermost: the call ends there.
	clientOpts = append(clientOpts, connect.WithInterceptors(&sender{broker: b, topic: topic, typeName: []string{typeName}}))
	client := connect.NewClient[M, emptypb.Empty](unreachable{}, "http://"+b.System()+PublishProcedure(topic), clientOpts...)
	_, err = client.CallUnary(context.Background(), connect.NewRequest(new(M)))
	if err := probe.check(err); err != nil {
		return nil, err
	}
	probe.through = true
	p.client, p.chain, p.spec, p.peer = client, probe.chain, probe.spec, probe.peer
	p.header = [2][]string{{probe.contentType}, {typeName}}
	m.publisher(topic)
	return p, nil
}

// Topic returns the topic p publishes to.
func (p *Publisher[M]) Topic() string { return p.topic }

// PublishOption configures one publish.
type PublishOption interface {
	applyToPublish(*publishCall)
}

type publishOptionFunc func(*publishCall)

func (f publishOptionFunc) applyToPublish(c *publishCall) { f(c) }

// WithMessageID sets the message's id; by default (or with "") each message
// gets a new unique id. Publishing two messages with the same id within the broker's
// deduplication window (JetStream's duplicate window, 2 minutes by default)
// stores only the first: publish with an id derived from what the message
// records (an entity id and version, an outbox row id) to make retried
// publishes safe.
func WithMessageID(id string) PublishOption {
	return publishOptionFunc(func(c *publishCall) { c.info.MessageID, c.dedup = id, id != "" })
}

// Publish publishes msg and returns once the broker has stored it (for
// natsjs: the JetStream stream acknowledged it), or with the error of the
// chain or of the broker. Invalid messages fail with
// connect.CodeInvalidArgument before reaching the broker.
func (p *Publisher[M]) Publish(ctx context.Context, msg *M, opts ...PublishOption) error {
	return p.publish(ctx, p.newOp(false, opts), msg)
}

// PublishAsync hands msg to the broker and returns at once with a [Future]
// that reports whether the broker stored it. The chain runs before it
// returns, so it sees the hand-over, not the confirmation. PublishAsync
// blocks only while the broker's window of unconfirmed publishes is full.
// Wait on every Future: a confirmation that fails is counted in
// pubsub_publish_errors_total when waited on.
func (p *Publisher[M]) PublishAsync(ctx context.Context, msg *M, opts ...PublishOption) *Future {
	op := p.newOp(true, opts)
	op.err = p.publish(ctx, op, msg)
	return &op.Future
}

// PublishBatch publishes msgs asynchronously, within the broker's window of
// unconfirmed publishes, and returns once the broker confirmed or rejected
// every one. It is the fast way to publish many messages from one goroutine.
// The error joins one error per failed message, each naming its index and id.
func (p *Publisher[M]) PublishBatch(ctx context.Context, msgs ...*M) error {
	futures := make([]*Future, len(msgs))
	for i, msg := range msgs {
		futures[i] = p.PublishAsync(ctx, msg)
	}
	var errs []error
	for i, f := range futures {
		if err := f.Wait(ctx); err != nil {
			errs = append(errs, fmt.Errorf("message %d (id %s): %w", i, f.ID(), err))
		}
	}
	return errors.Join(errs...)
}

func (p *Publisher[M]) newOp(async bool, opts []PublishOption) *publishOp[M] {
	op := &publishOp[M]{publishCall: publishCall{async: async}}
	call := &op.publishCall
	call.info = msgctx.Info{
		Operation:   msgctx.Publish,
		System:      p.system,
		Server:      p.server,
		Topic:       p.topic,
		MessageType: p.typeName,
	}
	for _, o := range opts {
		o.applyToPublish(call)
	}
	if call.info.MessageID == "" {
		call.info.MessageID = p.ids.next()
	}
	call.metrics = p.metrics
	return op
}

// Future is the confirmation of an asynchronous publish.
type Future struct {
	info    msgctx.Info
	err     error        // from the chain
	conf    Confirmation // set by the sender when the broker took the message
	metrics *metrics
	counted atomic.Bool
}

// ID returns the message's id.
func (f *Future) ID() string { return f.info.MessageID }

// Wait blocks until the broker confirms or rejects the message, or ctx is
// done, and returns the error of the chain, of the broker or of ctx. It may
// be called again, and from several goroutines at once.
func (f *Future) Wait(ctx context.Context) error {
	if f.err != nil {
		return f.err
	}
	if f.conf == nil {
		return errors.New("pubsub: publish did not reach the broker")
	}
	err := f.conf.Wait(ctx)
	if err != nil && ctx.Err() == nil && f.counted.CompareAndSwap(false, true) {
		f.metrics.publishErrors.WithLabelValues(f.info.Topic).Inc()
	}
	return err
}

// publishCall is one publish on its way through the chain to the sender.
type publishCall struct {
	Future
	async bool
	dedup bool // the application chose the id
	sent  bool // the sender ran
	ctx   publishContext
	resp  connect.Response[emptypb.Empty] // the sender's answer
}

// publishOp is a publishCall and its request, in one allocation.
type publishOp[M any] struct {
	publishCall
	req publishRequest[M]
}

type publishCallKey struct{}

// publishContext is the context of a publish: it carries the call and its
// msgctx.Info in one allocation.
type publishContext struct {
	context.Context
	call *publishCall
}

func (c *publishContext) Value(key any) any {
	switch {
	case key == (publishCallKey{}):
		return c.call
	case msgctx.IsKey(key):
		return &c.call.info
	}
	return c.Context.Value(key)
}

// publish runs call through the client chain to the sender.
func (p *Publisher[M]) publish(ctx context.Context, op *publishOp[M], msg *M) error {
	op.req = publishRequest[M]{
		p:      p,
		call:   &op.publishCall,
		header: http.Header{HeaderContentType: p.header[0], HeaderMessageType: p.header[1]},
	}
	op.req.Msg = msg
	op.ctx = publishContext{Context: ctx, call: &op.publishCall}
	_, err := p.chain(&op.ctx, &op.req)
	if err != nil && errors.Is(err, errClientContext()) {
		// ctx is a connect.NewClientContext, whose call info only
		// connect's client reads: its request headers go with the message.
		req := connect.NewRequest(msg)
		req.Header()[HeaderMessageType] = p.header[1]
		_, err = p.client.CallUnary(&op.ctx, req)
	}
	return err
}

// messageName returns the full protobuf name of M, or an error if *M is not
// a protobuf message.
func messageName[M any]() (string, error) {
	msg, ok := any(new(M)).(proto.Message)
	if !ok {
		var zero M
		if _, ptr := any(zero).(proto.Message); ptr { // NewPublisher[*examplev1.ProfileChanged]
			return "", fmt.Errorf("pubsub: the message type is %T, a pointer: give the generated struct, %s", zero, strings.TrimPrefix(fmt.Sprintf("%T", zero), "*"))
		}
		return "", fmt.Errorf("pubsub: %T is not a protobuf message", &zero)
	}
	return string(msg.ProtoReflect().Descriptor().FullName()), nil
}
