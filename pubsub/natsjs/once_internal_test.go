package natsjs

import (
	"context"
	"testing"
)

// A reset made while the function runs (a reconnect while the dead-letter
// stream is being checked) must make the next do run it again: what the
// run checked may be gone with the server it checked it on.
func TestOnceErrResetDuringRunIsKept(t *testing.T) {
	var o onceErr
	runs := 0
	err := o.do(context.Background(), func() error {
		runs++
		o.reset()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.do(context.Background(), func() error { runs++; return nil }); err != nil {
		t.Fatal(err)
	}
	if runs != 2 {
		t.Fatalf("the function ran %d times, want 2: the reset during the first run was lost", runs)
	}
	if err := o.do(context.Background(), func() error { runs++; return nil }); err != nil {
		t.Fatal(err)
	}
	if runs != 2 {
		t.Fatalf("the function ran %d times after a success, want 2", runs)
	}
}
