package connctx

import (
	"context"
	"testing"
)

func TestFromContext(t *testing.T) {
	t.Parallel()
	if s := FromContext(context.Background()); s != nil {
		t.Errorf("FromContext(Background) = %v; want nil", s)
	}
	type other struct{}
	ctx := NewContext(context.Background())
	s, under := FromContext(ctx), FromContext(context.WithValue(ctx, other{}, 1))
	if s == nil || under != s {
		t.Fatalf("FromContext = %p, then %p under another value; want one State", s, under)
	}
	if FromContext(NewContext(ctx)) == s {
		t.Error("NewContext returned the State of its parent")
	}
}
