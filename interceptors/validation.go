package interceptors

import (
	"context"
	"errors"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"connectrpc.com/validate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/connectkit/connectkit/internal/ruled"
)

// Validation returns an interceptor that checks messages against the
// protovalidate rules of their proto definitions, through
// connectrpc.com/validate. On a server it checks each request message before
// the handler sees it; on a client, each request message before it is sent. An
// invalid message fails the call with InvalidArgument, whose details carry
// every violation twice: as buf.validate.Violations (connect's validate
// interceptor) and as the standard google.rpc.BadRequest with one field
// violation per rule broken (field path and description), which gRPC tools and
// clients without the protovalidate protos understand.
//
// A message whose type holds no protovalidate rules (its own, its oneofs',
// its fields', or those of the message types it holds) is passed on
// unchecked, without asking protovalidate. A validator given with
// [validate.WithValidator] checks every message, as connect's interceptor
// does.
//
// Validation builds protovalidate's global validator before it returns
// (once a process: about 2 ms and 0.8 MB of heap that stays), so that the
// first call with rules does not pay for it, and a server that registers
// proto files at run time cannot deadlock the build. With a validator of
// your own ([validate.WithValidator]) it is not built; your validator is
// then asked once, at construction, about an empty google.protobuf.Empty
// (its answer, or its panic, is ignored).
func Validation(opts ...validate.Option) connect.Interceptor {
	if !replacesValidator(opts) {
		// A message that needs the validator builds it (an empty one is
		// checked against no rules); the error of a build that failed
		// comes back from every validated call, which asks for the
		// validator again.
		_ = protovalidate.GlobalValidator.Validate(&emptypb.Empty{})
	}
	return newValidation(protovalidate.GlobalValidator, opts...)
}

// replacesValidator reports whether opts give connect's validate
// interceptor a validator that replaces the one [validation] gives it
// first. validate keeps its validator unexported, so an interceptor made
// with a marker first, then opts, checks an empty message: the marker sees
// it unless opts replaced it. (A validator of the user's that is
// protovalidate's global one, or wraps it, builds it then.)
func replacesValidator(opts []validate.Option) bool {
	if len(opts) == 0 {
		return false
	}
	var m marker
	ic := validate.NewInterceptor(append([]validate.Option{validate.WithValidator(&m)}, opts...)...)
	call := ic.WrapUnary(func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
		return connect.NewResponse(&emptypb.Empty{}), nil
	})
	func() {
		// A validator of the user's that panics about a message it never
		// meant to see (one that knows its own types alone) is not
		// Validation's: the probe must not take the process down, nor
		// keep a server from being made.
		defer func() { _ = recover() }()
		_, _ = call(context.Background(), connect.NewRequest(&emptypb.Empty{}))
	}()
	return !m.asked
}

// marker is a validator that records whether it was asked.
type marker struct{ asked bool }

func (m *marker) Validate(proto.Message, ...protovalidate.ValidationOption) error {
	m.asked = true
	return nil
}

// newValidation is Validation with the validator of messages with rules.
func newValidation(inner protovalidate.Validator, opts ...validate.Option) *validation {
	return &validation{inner: inner, opts: opts, types: &ruled.Types{}}
}

// validation builds connect's validate interceptor for each procedure it
// wraps, each with its own [ruled.Validator] over the types they share.
type validation struct {
	inner protovalidate.Validator
	opts  []validate.Option
	types *ruled.Types
}

// procedure returns connect's validate interceptor for one procedure: a
// validator given in opts replaces the ruled.Validator.
func (v *validation) procedure() *validate.Interceptor {
	rv := ruled.NewValidator(v.inner, v.types)
	return validate.NewInterceptor(append([]validate.Option{validate.WithValidator(rv)}, v.opts...)...)
}

func (v *validation) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	wrapped := v.procedure().WrapUnary(next)
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		resp, err := wrapped(ctx, req)
		if err != nil {
			return resp, withBadRequest(err)
		}
		return resp, nil
	}
}

func (v *validation) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return v.procedure().WrapStreamingHandler(func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return next(ctx, badRequestHandlerConn{conn})
	})
}

func (v *validation) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	wrapped := v.procedure().WrapStreamingClient(next)
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		return badRequestClientConn{wrapped(ctx, spec)}
	}
}

// badRequestHandlerConn adds google.rpc.BadRequest to the errors of the
// validating conn it wraps.
type badRequestHandlerConn struct{ connect.StreamingHandlerConn }

func (c badRequestHandlerConn) Receive(msg any) error {
	return withBadRequest(c.StreamingHandlerConn.Receive(msg))
}

func (c badRequestHandlerConn) Send(msg any) error {
	return withBadRequest(c.StreamingHandlerConn.Send(msg))
}

type badRequestClientConn struct{ connect.StreamingClientConn }

func (c badRequestClientConn) Send(msg any) error {
	return withBadRequest(c.StreamingClientConn.Send(msg))
}

func (c badRequestClientConn) Receive(msg any) error {
	return withBadRequest(c.StreamingClientConn.Receive(msg))
}

// withBadRequest adds a google.rpc.BadRequest detail to an InvalidArgument
// error caused by a protovalidate violation, unless it has one.
func withBadRequest(err error) error {
	if err == nil {
		return nil
	}
	var ve *protovalidate.ValidationError
	var ce *connect.Error
	if !errors.As(err, &ve) || !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument {
		return err
	}
	for _, d := range ce.Details() {
		if d.Type() == "google.rpc.BadRequest" {
			return err
		}
	}
	br := &errdetails.BadRequest{}
	for _, v := range ve.Violations {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       protovalidate.FieldPathString(v.Proto.GetField()),
			Description: v.Proto.GetMessage(),
			Reason:      v.Proto.GetRuleId(),
		})
	}
	if detail, derr := connect.NewErrorDetail(br); derr == nil {
		ce.AddDetail(detail)
	}
	return err
}
