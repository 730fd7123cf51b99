// Package protoregtest reproduces, in tests, a proto file registered in
// [protoregistry.GlobalFiles] while protovalidate's global validator is
// built, which deadlocks the build (see interceptors.Validation), in a
// process of the test's own, as the validator is the process's.
package protoregtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// InChild reports whether t runs in the process of its own that it runs
// in, its binary run again with the variable env set, in which
// protovalidate's global validator is not built yet; otherwise it runs
// that process and fails t if the process fails (or is still running
// after 90 s: a deadlock, not a slow run).
func InChild(t *testing.T, env string) bool {
	t.Helper()
	if os.Getenv(env) != "" {
		return true
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the child: %v\n%s", err, out)
	}
	return false
}

// RegisterFile registers a proto file of one message, the i-th, in
// protoregistry.GlobalFiles, as a server that loads descriptors at run
// time does.
func RegisterFile(tb testing.TB, i int) {
	pkg := fmt.Sprintf("protoregtest.registered%d", i)
	fdp := &descriptorpb.FileDescriptorProto{
		Name:        proto.String(fmt.Sprintf("protoregtest/registered%d.proto", i)),
		Package:     proto.String(pkg),
		Syntax:      proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("M")}},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		tb.Error(err)
		return
	}
	if err := protoregistry.GlobalFiles.RegisterFile(fd); err != nil {
		tb.Error(err)
	}
}

// HoldRegistration holds a registration of a proto file waiting for
// protoregistry.GlobalFiles' write lock, behind a read of the registry
// that it holds, so that a build of protovalidate's validator started
// now waits as it does in the deadlock, deterministically. The function
// it returns ends the read and waits for the registration to go through.
func HoldRegistration(tb testing.TB) (release func()) {
	tb.Helper()
	holding, released := make(chan struct{}), make(chan struct{})
	go protoregistry.GlobalFiles.RangeFiles(func(protoreflect.FileDescriptor) bool {
		close(holding)
		<-released
		return false
	})
	<-holding
	registered := make(chan struct{})
	go func() {
		defer close(registered)
		RegisterFile(tb, 0) // waits for the write lock, and new readers behind it
	}()
	waitForGoroutine(tb, "protoregistry.(*Files).RegisterFile")
	return func() {
		close(released)
		<-registered
	}
}

// waitForGoroutine waits until a goroutine's stack holds fn, blocked in
// it: the registration waiting for the registry's write lock.
func waitForGoroutine(tb testing.TB, fn string) {
	tb.Helper()
	buf := make([]byte, 1<<20)
	for range 3000 {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, fn) && strings.Contains(g, "sync.(*RWMutex).Lock") {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatalf("no goroutine blocked in %s", fn)
}

// RegisterFiles registers files in protoregistry.GlobalFiles, one after
// another, on a goroutine of its own, from its first on, until the
// function it returns is called, which waits for it.
func RegisterFiles(tb testing.TB) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	first := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; ; i++ { // 0 is HoldRegistration's
			select {
			case <-quit:
				return
			default:
			}
			RegisterFile(tb, i)
			if i == 1 {
				close(first)
			}
		}
	}()
	<-first
	return func() {
		close(quit)
		<-done
	}
}
