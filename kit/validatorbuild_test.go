package kit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"connectrpc.com/validate"
	"google.golang.org/protobuf/proto"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/internal/protoregtest"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// registeringChild is the variable under which
// TestFirstValidatedCallWhileFilesRegister runs its own binary again, in a
// process whose protovalidate global validator is not built yet.
const registeringChild = "KIT_TEST_REGISTERING_CHILD"

// A server whose process registers proto files at run time serves its
// first validated call: protovalidate built its global validator at the
// first message with rules, walking protoregistry.GlobalFiles
// (RangeFiles, a read lock) and looking each file up in it again inside
// (cel-go's FindFileByPath, a second read lock), so that a RegisterFile
// waiting for the write lock in between blocked the second read lock,
// and both for good: the call hung. kit.New builds it now. The check
// runs in a process of its own, as the validator is the process's.
func TestFirstValidatedCallWhileFilesRegister(t *testing.T) {
	t.Parallel()
	if !protoregtest.InChild(t, registeringChild) {
		return
	}
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
	})
	stop := protoregtest.RegisterFiles(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	client := newPingClient(srv, srv.HTTP2Client())
	_, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: -1}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		// The registering goroutine may hang too: exit without it.
		fmt.Printf("Ping(-1): %v, want invalid_argument (a deadline: the validator's build hung)\n", err)
		os.Exit(1)
	}
	stop()
}

// ownValidatorChild is the variable under which
// TestOwnValidatorWhileFilesRegister runs its own binary again.
const ownValidatorChild = "KIT_TEST_OWN_VALIDATOR_CHILD"

// A server whose chain validates with a validator of the application's
// own (validate.WithValidator) does not build protovalidate's global one,
// which it never uses: kit.New built it whatever the options (~0.8 MB of
// heap kept), and so could deadlock, as the first validated call did
// before (see TestFirstValidatedCallWhileFilesRegister), when a file was
// registered meanwhile. kit.New returns here while files register, and
// the application's validator answers the call.
func TestOwnValidatorWhileFilesRegister(t *testing.T) {
	t.Parallel()
	if !protoregtest.InChild(t, ownValidatorChild) {
		return
	}
	own, err := protovalidate.New() // before any file registers: it walks them too
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingValidator{inner: own}
	stop := protoregtest.RegisterFiles(t)
	hung := time.AfterFunc(30*time.Second, func() {
		// The registering goroutine hangs too: exit without it.
		fmt.Println("kit.New or the call hung 30 s: protovalidate's global validator was built while files registered")
		os.Exit(1)
	})
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
	}, kit.WithInterceptorOptions(interceptors.WithValidateOptions(validate.WithValidator(counted))))
	client := newPingClient(srv, srv.HTTP2Client())
	_, err = client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: -1}))
	hung.Stop()
	stop()
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("Ping(-1): %v, want invalid_argument", err)
	}
	if n := counted.n.Load(); n < 2 { // Validation's question, then the call's request
		t.Errorf("the application's validator was asked %d times, want 2 or more", n)
	}
}

// countingValidator counts the messages it passes to inner.
type countingValidator struct {
	inner protovalidate.Validator
	n     atomic.Int64
}

func (v *countingValidator) Validate(msg proto.Message, opts ...protovalidate.ValidationOption) error {
	v.n.Add(1)
	return v.inner.Validate(msg, opts...)
}

// blockedBuildChild is the variable under which
// TestBlockedValidatorBuildIsLogged runs its own binary again.
const blockedBuildChild = "KIT_TEST_BLOCKED_BUILD_CHILD"

// A kit.New whose validator's build waits behind a registration of a
// proto file from another goroutine says so in an error line, naming the
// cause and the mend, where it hung without a word. The registration is
// held waiting here, behind a read of the registry that the test holds,
// so that the build waits as it does in the deadlock, deterministically,
// and goes on once the read ends.
func TestBlockedValidatorBuildIsLogged(t *testing.T) {
	t.Parallel()
	if !protoregtest.InChild(t, blockedBuildChild) {
		return
	}
	kit.SetChainBuildWarning(50 * time.Millisecond)
	release := protoregtest.HoldRegistration(t)
	var logs syncBuffer
	built := make(chan error, 1)
	go func() {
		_, err := kit.New(kit.Config{}, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
		built <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "kit.New: the interceptor chain is still being built") {
		if time.Now().After(deadline) {
			fmt.Printf("no line after 30 s; logs:\n%s\n", logs.String())
			os.Exit(1)
		}
		time.Sleep(10 * time.Millisecond)
	}
	line := logs.String()
	for _, want := range []string{`"level":"ERROR"`, "registered in protoregistry", "before kit.New or after it returns"} {
		if !strings.Contains(line, want) {
			t.Errorf("line %s lacks %q", line, want)
		}
	}
	release()
	if err := <-built; err != nil {
		t.Fatalf("kit.New once the registration went through: %v", err)
	}
	// The build went on: kit.New says so, after the error line.
	after := logs.String()
	if i, j := strings.Index(after, "still being built"), strings.Index(after, "kit.New: the interceptor chain is built after all"); j < i {
		t.Errorf("no warn line that the chain was built after all, after the error line; logs:\n%s", after)
	}
}

// panicBuildChild is the variable under which
// TestPanicInChainBuildStopsTheWarning runs its own binary again.
const panicBuildChild = "KIT_TEST_PANIC_BUILD_CHILD"

// A kit.New that panics while it builds its chain (an option that is
// nil) stops the timer of its warning: it logged, chainBuildWarning
// later, that the chain was still being built, in a process that had
// recovered from the panic and gone on.
func TestPanicInChainBuildStopsTheWarning(t *testing.T) {
	t.Parallel()
	if !protoregtest.InChild(t, panicBuildChild) {
		return
	}
	const warning = time.Second
	kit.SetChainBuildWarning(warning)
	var logs syncBuffer
	start := time.Now()
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("kit.New with a nil validate option did not panic")
			}
		}()
		_, _ = kit.New(kit.Config{}, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
			kit.WithInterceptorOptions(interceptors.WithValidateOptions(nil)))
	}()
	if took := time.Since(start); took >= warning/2 {
		t.Skipf("kit.New took %v to panic, too near the %v warning to tell", took, warning)
	}
	time.Sleep(3 * warning)
	if strings.Contains(logs.String(), "still being built") {
		t.Errorf("the warning's timer outlived kit.New's panic; logs:\n%s", logs.String())
	}
}

// A validator of the application's own that knows its own message types
// alone, and panics about any other, is asked by Validation about an
// empty google.protobuf.Empty when kit.New builds the chain: kit.New
// panicked, where before that question the validator saw only the calls'
// messages. kit.New now returns, and the validator answers the calls.
func TestOwnTypesValidatorDoesNotPanicNew(t *testing.T) {
	t.Parallel()
	own := ownTypesValidator{}
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
	}, kit.WithInterceptorOptions(interceptors.WithValidateOptions(validate.WithValidator(own))))
	client := newPingClient(srv, srv.HTTP2Client())
	_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: -1}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("Ping(-1): %v, want invalid_argument from the application's validator", err)
	}
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
		t.Errorf("Ping(1): %v", err)
	}
}

// ownTypesValidator validates PingRequest (a negative number is invalid)
// and panics about any other message.
type ownTypesValidator struct{}

func (ownTypesValidator) Validate(msg proto.Message, _ ...protovalidate.ValidationOption) error {
	if msg.(*pingv1.PingRequest).GetNumber() < 0 {
		return errors.New("number: must not be negative")
	}
	return nil
}
