package interceptors

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"connectrpc.com/connect"
)

// ForProcedures returns an interceptor that applies ic to the calls of the
// procedures named, and passes every other call on as if ic were not in
// the chain, on servers and clients alike: what go-kit does by wrapping one
// endpoint in a middleware. connect-go gives a handler's options to every
// procedure of its service, and generated code takes no options per
// method. Each name is one method ("/acme.v1.Orders/Create", which names
// that method alone, not CreateMany), a whole service ("/acme.v1.Orders/",
// or "/acme.v1.Orders" without the slash, so "/" +
// ordersv1connect.OrdersServiceName: that service alone, not
// "/acme.v1.OrdersAdmin/"), or a package by the prefix of its procedures,
// ending in "." ("/acme.v1."), as [WithExemptProcedures] reads them; the
// generated constants (ordersv1connect.OrdersServiceCreateOrderProcedure)
// are such names. A rate limit on one method only:
//
//	limit := interceptors.ForProcedures(interceptors.RateLimit(10, 5),
//		ordersv1connect.OrdersServiceCreateOrderProcedure)
//	srv.Mount(ordersv1connect.NewOrdersServiceHandler(svc,
//		append(srv.HandlerOptions(), connect.WithInterceptors(limit))...))
//
// ForProcedures panics if no procedure is named or a name does not start
// with "/" (a procedure always does: such a name would match no call).
func ForProcedures(ic connect.Interceptor, procedures ...string) connect.Interceptor {
	if len(procedures) == 0 {
		panic("interceptors: ForProcedures: no procedures named")
	}
	for _, p := range procedures {
		if !strings.HasPrefix(p, "/") {
			panic(fmt.Sprintf(`interceptors: ForProcedures: procedure %q does not start with "/" (want "/pkg.Service/Method" or "/pkg.Service/")`, p))
		}
	}
	return &forProcedures{ic: ic, set: newProcedureSet(procedures)}
}

type forProcedures struct {
	ic  connect.Interceptor
	set procedureSet
}

func (f *forProcedures) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	wrapped := f.ic.WrapUnary(next)
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if f.set.contains(req.Spec().Procedure) {
			return wrapped(ctx, req)
		}
		return next(ctx, req)
	}
}

func (f *forProcedures) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	wrapped := f.ic.WrapStreamingClient(next)
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		if f.set.contains(spec.Procedure) {
			return wrapped(ctx, spec)
		}
		return next(ctx, spec)
	}
}

func (f *forProcedures) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	wrapped := f.ic.WrapStreamingHandler(next)
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if f.set.contains(conn.Spec().Procedure) {
			return wrapped(ctx, conn)
		}
		return next(ctx, conn)
	}
}

// procedureSet holds procedures named as [ForProcedures] and
// [WithExemptProcedures] take them.
type procedureSet struct {
	prefixes []string // services ("/pkg.Service/") and packages ("/pkg."), by the prefix of their procedures
	methods  []string // single methods, whole procedures
}

func newProcedureSet(names []string) procedureSet {
	var s procedureSet
	for _, p := range names {
		switch i := strings.LastIndexByte(p, '/'); {
		case i > 0 && i < len(p)-1:
			// "/pkg.Service/Method" names one procedure: as a prefix it
			// would also match "/pkg.Service/MethodMany".
			s.methods = append(s.methods, p)
		case i == 0 && !strings.HasSuffix(p, "."):
			// "/pkg.Service" ("/" + the generated ServiceName) names that
			// service: as a prefix it would also match
			// "/pkg.ServiceAdmin/Method".
			s.prefixes = append(s.prefixes, p+"/")
		default:
			s.prefixes = append(s.prefixes, p)
		}
	}
	return s
}

func (s *procedureSet) contains(procedure string) bool {
	for _, p := range s.prefixes {
		if strings.HasPrefix(procedure, p) {
			return true
		}
	}
	return slices.Contains(s.methods, procedure)
}
