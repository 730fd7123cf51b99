package msgctx

import (
	"context"
	"errors"
	"testing"

	"connectrpc.com/connect"
)

func TestOutcome(t *testing.T) {
	t.Parallel()
	plain := errors.New("boom")
	tests := []struct {
		name string
		info Info
		err  error
		want Outcome
	}{
		{name: "success", info: Info{Attempt: 1, MaxAttempts: 3}, err: nil, want: Ack},
		{name: "plain error retried", info: Info{Attempt: 1, MaxAttempts: 3}, err: plain, want: Retry},
		{name: "unavailable retried", info: Info{Attempt: 2, MaxAttempts: 3}, err: connect.NewError(connect.CodeUnavailable, plain), want: Retry},
		{name: "last attempt", info: Info{Attempt: 3, MaxAttempts: 3}, err: plain, want: DeadLetter},
		{name: "unlimited attempts", info: Info{Attempt: 100}, err: plain, want: Retry},
		{name: "invalid argument", info: Info{Attempt: 1, MaxAttempts: 3}, err: connect.NewError(connect.CodeInvalidArgument, plain), want: DeadLetter},
		{name: "marked permanent", info: Info{Attempt: 1, MaxAttempts: 3, Permanent: true}, err: plain, want: DeadLetter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.info.Outcome(tc.err); got != tc.want {
				t.Errorf("Outcome(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

func TestContext(t *testing.T) {
	t.Parallel()
	if FromContext(context.Background()) != nil {
		t.Fatal("empty context has an Info")
	}
	info := &Info{Topic: "t"}
	if got := FromContext(NewContext(context.Background(), info)); got != info {
		t.Fatalf("FromContext = %v, want %v", got, info)
	}
}

// carrier is a context type that carries an Info as pubsub's do.
type carrier struct {
	context.Context
	info *Info
}

func (c carrier) Value(k any) any {
	if IsKey(k) {
		return c.info
	}
	return c.Context.Value(k)
}

func TestIsKey(t *testing.T) {
	t.Parallel()
	info := &Info{Topic: "t"}
	if got := FromContext(carrier{Context: context.Background(), info: info}); got != info {
		t.Fatalf("FromContext(carrier) = %v, want %v", got, info)
	}
	if IsKey(struct{}{}) || IsKey("msgctx") {
		t.Error("IsKey accepts keys other than msgctx's")
	}
}

func TestForCall(t *testing.T) {
	t.Parallel()
	deliveryInfo := &Info{Operation: Process, Topic: "orders.created", Subscription: "payments"}
	publishInfo := &Info{Operation: Publish, Topic: "orders.paid"}
	tests := []struct {
		name string
		info *Info
		spec connect.Spec
		peer connect.Peer
		want bool
	}{
		{name: "delivery", info: deliveryInfo, spec: connect.Spec{Procedure: "/orders.created/payments"}, peer: connect.Peer{Protocol: connect.ProtocolConnect}, want: true},
		{name: "publish", info: publishInfo, spec: connect.Spec{Procedure: "/orders.paid/publish", IsClient: true}, want: true},
		{name: "publish to a peer", info: publishInfo, spec: connect.Spec{Procedure: "/orders.paid/publish", IsClient: true}, peer: connect.Peer{Addr: "127.0.0.1:4222"}, want: true},
		{name: "call served from the network", info: deliveryInfo, spec: connect.Spec{Procedure: "/orders.created/payments"}, peer: connect.Peer{Addr: "127.0.0.1:50000", Protocol: connect.ProtocolConnect}},
		{name: "RPC of a handler", info: deliveryInfo, spec: connect.Spec{Procedure: "/example.v1.PaymentService/Charge", IsClient: true}},
		{name: "RPC served under a handler's context", info: deliveryInfo, spec: connect.Spec{Procedure: "/example.v1.PaymentService/Charge"}},
		{name: "RPC of a publish interceptor", info: publishInfo, spec: connect.Spec{Procedure: "/auth.v1.TokenService/Token", IsClient: true}},
		{name: "other subscription", info: deliveryInfo, spec: connect.Spec{Procedure: "/orders.created/paymentsX"}},
		{name: "other topic", info: deliveryInfo, spec: connect.Spec{Procedure: "/orders.createdX/payments"}},
		{name: "client side of a delivery's procedure", info: deliveryInfo, spec: connect.Spec{Procedure: "/orders.created/payments", IsClient: true}},
		{name: "no info", spec: connect.Spec{Procedure: "/orders.created/payments"}},
		{name: "request replaced by an interceptor", info: deliveryInfo, spec: connect.Spec{}, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if tc.info != nil {
				ctx = NewContext(ctx, tc.info)
			}
			if got := ForCall(ctx, tc.spec, tc.peer) != nil; got != tc.want {
				t.Errorf("ForCall(%+v, %+v) found the Info: %v, want %v", tc.spec, tc.peer, got, tc.want)
			}
		})
	}
}

// infoRequest is a request that holds its Info, as pubsub's do.
type infoRequest struct {
	*connect.Request[struct{}]
	info *Info
}

func (r infoRequest) MessageInfo() *Info { return r.info }

func TestForRequest(t *testing.T) {
	t.Parallel()
	deliveryInfo := &Info{Operation: Process, Topic: "orders.created", Subscription: "payments"}
	inCtx := NewContext(context.Background(), deliveryInfo)
	held := &Info{Operation: Publish, Topic: "orders.paid"}
	// ForRequestOf answers as ForRequest with the spec and peer read by
	// its caller.
	for name, forRequest := range map[string]func(context.Context, connect.AnyRequest) *Info{
		"ForRequest": ForRequest,
		"ForRequestOf": func(ctx context.Context, req connect.AnyRequest) *Info {
			spec, peer := req.Spec(), req.Peer()
			return ForRequestOf(ctx, req, &spec, &peer)
		},
	} {
		if got := forRequest(context.Background(), infoRequest{connect.NewRequest(&struct{}{}), held}); got != held {
			t.Errorf("%s(a request holding its Info) = %v, want %v", name, got, held)
		}
		// A request holding none, and a plain one, are looked up as ForCall does.
		for _, req := range []connect.AnyRequest{infoRequest{Request: connect.NewRequest(&struct{}{})}, connect.NewRequest(&struct{}{})} {
			if got := forRequest(inCtx, req); got != deliveryInfo {
				t.Errorf("%s(%T without an Info, a delivery's context) = %v, want %v", name, req, got, deliveryInfo)
			}
			if got := forRequest(context.Background(), req); got != nil {
				t.Errorf("%s(%T without an Info, no Info in the context) = %v, want nil", name, req, got)
			}
		}
	}
	// A call served with a peer address came over the network: an RPC,
	// whatever its request or context hold.
	served, client := connect.Spec{}, connect.Spec{IsClient: true}
	network := connect.Peer{Addr: "192.0.2.1:4321", Protocol: connect.ProtocolConnect}
	req := infoRequest{connect.NewRequest(&struct{}{}), held}
	if got := ForRequestOf(inCtx, req, &served, &network); got != nil {
		t.Errorf("ForRequestOf(a call served with a peer address) = %v, want nil", got)
	}
	if got := ForRequestOf(inCtx, req, &client, &network); got != held {
		t.Errorf("ForRequestOf(a client's request holding its Info) = %v, want %v", got, held)
	}
}
