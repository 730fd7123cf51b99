package interceptors_test

import (
	"errors"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

func TestValidation(t *testing.T) {
	t.Parallel()
	calls := []struct {
		name  string
		field string
		call  func(*testing.T, pingv1connect.PingServiceClient) error
	}{
		{name: "unary", field: "number", call: func(t *testing.T, c pingv1connect.PingServiceClient) error {
			_, err := c.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: -1}))
			return err
		}},
		{name: "client stream", field: "number", call: func(t *testing.T, c pingv1connect.PingServiceClient) error {
			return runStream(t, c, pingv1connect.PingServiceSumProcedure, []int64{1, -1}).err
		}},
		{name: "server stream", field: "number", call: func(t *testing.T, c pingv1connect.PingServiceClient) error {
			return runStream(t, c, pingv1connect.PingServiceCountUpProcedure, []int64{10001}).err
		}},
		{name: "bidi stream", field: "number", call: func(t *testing.T, c pingv1connect.PingServiceClient) error {
			return runStream(t, c, pingv1connect.PingServiceCumSumProcedure, []int64{1, -1}).err
		}},
	}
	for _, proto := range protocols {
		for _, tc := range calls {
			t.Run(proto.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				s := newTestServer(t, serverConfig{})
				err := tc.call(t, pingv1connect.NewPingServiceClient(httpClient(t, false), s.URL, proto.opts...))
				assertViolation(t, err, tc.field)
				s.server.logs.waitLine(t, map[string]any{"msg": "rpc", "code": "invalid_argument", "level": "WARN"})
			})
		}
	}
}

// TestValidationClient checks that a client with Validation does not send
// an invalid request.
func TestValidationClient(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, serverConfig{})
	client := pingv1connect.NewPingServiceClient(httpClient(t, false), s.URL,
		connect.WithInterceptors(interceptors.Validation()))
	_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: -1}))
	assertViolation(t, err, "number")
	stream := client.Sum(t.Context())
	err = stream.Send(&pingv1.SumRequest{Number: -1})
	assertViolation(t, err, "number")
	_, _ = stream.CloseAndReceive()
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
		t.Fatal(err)
	}
	s.server.logs.waitLine(t, map[string]any{"msg": "rpc", "procedure": pingv1connect.PingServicePingProcedure}) // only the valid Ping
	s.server.logs.waitLine(t, map[string]any{"msg": "rpc", "procedure": pingv1connect.PingServiceSumProcedure, "received": 0.0})
	if lines := s.server.logs.matching(t, map[string]any{"code": "invalid_argument"}); len(lines) != 0 {
		t.Errorf("the server saw invalid messages: %v", lines)
	}
}

// assertViolation checks that err is InvalidArgument with the violation of
// field in both detail types.
func assertViolation(t *testing.T, err error, field string) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument {
		t.Fatalf("err = %v, want invalid_argument", err)
	}
	var violations, badRequest bool
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			t.Fatalf("detail %s: %v", d.Type(), derr)
		}
		switch m := v.(type) {
		case *validate.Violations:
			violations = len(m.GetViolations()) == 1 && m.GetViolations()[0].GetField().GetElements()[0].GetFieldName() == field
		case *errdetails.BadRequest:
			fv := m.GetFieldViolations()
			badRequest = len(fv) == 1 && fv[0].GetField() == field && fv[0].GetDescription() != "" && fv[0].GetReason() != ""
		}
	}
	if !violations || !badRequest {
		t.Errorf("details of %v: buf.validate.Violations ok %v, google.rpc.BadRequest ok %v; want both for %q",
			err, violations, badRequest, field)
	}
}
