package interceptors

import "testing"

// A name is one method, a service (with or without its trailing slash) or a
// package ending in "."; a service named without the slash matches that
// service alone, not another whose name it begins (rev84's prefix trap).
func TestProcedureSetNames(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, procedure string
		want            bool
	}{
		{"/acme.v1.Orders", "/acme.v1.Orders/Create", true},
		{"/acme.v1.Orders", "/acme.v1.OrdersAdmin/Create", false},
		{"/acme.v1.Orders/", "/acme.v1.Orders/Create", true},
		{"/acme.v1.Orders/", "/acme.v1.OrdersAdmin/Create", false},
		{"/acme.v1.Orders/Create", "/acme.v1.Orders/Create", true},
		{"/acme.v1.Orders/Create", "/acme.v1.Orders/CreateMany", false},
		{"/acme.v1.", "/acme.v1.Orders/Create", true},
		{"/acme.v1.", "/acme.v2.Orders/Create", false},
		{"/grpc.reflection.", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", true},
	} {
		s := newProcedureSet([]string{c.name})
		if got := s.contains(c.procedure); got != c.want {
			t.Errorf("name %q, procedure %q: contains = %v, want %v", c.name, c.procedure, got, c.want)
		}
	}
}
