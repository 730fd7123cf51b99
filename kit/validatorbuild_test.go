package kit_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
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
	if os.Getenv(registeringChild) == "" {
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second) // a deadlock, not a slow call
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFirstValidatedCallWhileFilesRegister$", "-test.count=1")
		cmd.Env = append(os.Environ(), registeringChild+"=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("the child: %v\n%s", err, out)
		}
		return
	}
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
	})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			registerNumberedFile(t, i)
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	client := newPingClient(srv, srv.HTTP2Client())
	_, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: -1}))
	close(stop)
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		// The registering goroutine may hang too: exit without it.
		fmt.Printf("Ping(-1): %v, want invalid_argument (a deadline: the validator's build hung)\n", err)
		os.Exit(1)
	}
	<-done
}

// registerNumberedFile registers a proto file of one message, the i-th, in
// protoregistry.GlobalFiles, as a server that loads descriptors at run
// time does.
func registerNumberedFile(t *testing.T, i int) {
	pkg := fmt.Sprintf("kittest.registered%d", i)
	fdp := &descriptorpb.FileDescriptorProto{
		Name:        proto.String(fmt.Sprintf("kittest/registered%d.proto", i)),
		Package:     proto.String(pkg),
		Syntax:      proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("M")}},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Error(err)
		return
	}
	if err := protoregistry.GlobalFiles.RegisterFile(fd); err != nil {
		t.Error(err)
	}
}
