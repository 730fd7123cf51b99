package kit

import (
	"context"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"
)

// TestResponseLimitEmpty checks that an empty response passes the limit
// unmeasured, and that one carrying unknown fields is still measured.
func TestResponseLimitEmpty(t *testing.T) {
	t.Parallel()
	withUnknown := &emptypb.Empty{}
	withUnknown.ProtoReflect().SetUnknown([]byte{0x08, 0x01}) // field 1, varint 1: 2 bytes
	for _, tc := range []struct {
		name string
		msg  *emptypb.Empty
		code connect.Code // 0: no error
	}{
		{name: "empty", msg: &emptypb.Empty{}},
		{name: "with unknown fields over the limit", msg: withUnknown, code: connect.CodeResourceExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			call := responseLimit(1).WrapUnary(func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
				return connect.NewResponse(tc.msg), nil
			})
			_, err := call(t.Context(), connect.NewRequest(&emptypb.Empty{}))
			if code := connect.CodeOf(err); (err == nil) != (tc.code == 0) || (err != nil && code != tc.code) {
				t.Errorf("error %v, want code %v", err, tc.code)
			}
		})
	}
}
