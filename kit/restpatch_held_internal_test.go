package kit

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	_ "google.golang.org/protobuf/types/known/fieldmaskpb" // the descriptor's import
)

// heldItems registers, once, a service of two PATCH routes: Update's
// (body "inner", a request of one FieldMask) fills the mask from the
// body, Replace's (body "*") does not.
var heldItems = sync.OnceValue(func() error {
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	field := func(name string, n int32, typ descriptorpb.FieldDescriptorProto_Type, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), JsonName: proto.String(name), Number: proto.Int32(n), Type: typ.Enum(), Label: opt}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	method := func(name string, r *annotations.HttpRule) *descriptorpb.MethodDescriptorProto {
		o := &descriptorpb.MethodOptions{}
		proto.SetExtension(o, annotations.E_Http, r)
		return &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: proto.String(".connectkit.patchheld.v1.Item"),
			OutputType: proto.String(".connectkit.patchheld.v1.Item"), Options: o}
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("connectkit/patchheld/v1/items.proto"),
		Package:    proto.String("connectkit.patchheld.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/api/annotations.proto", "google/protobuf/field_mask.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Inner"), Field: []*descriptorpb.FieldDescriptorProto{field("text", 1, descriptorpb.FieldDescriptorProto_TYPE_STRING, "")}},
			{Name: proto.String("Item"), Field: []*descriptorpb.FieldDescriptorProto{
				field("id", 1, descriptorpb.FieldDescriptorProto_TYPE_INT64, ""),
				field("inner", 2, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, ".connectkit.patchheld.v1.Inner"),
				field("mask", 3, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, ".google.protobuf.FieldMask"),
			}},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("Items"), Method: []*descriptorpb.MethodDescriptorProto{
			method("Update", &annotations.HttpRule{Pattern: &annotations.HttpRule_Patch{Patch: "/v1/items/{id}"}, Body: "inner"}),
			method("Replace", &annotations.HttpRule{Pattern: &annotations.HttpRule_Patch{Patch: "/v1/items/{id}:replace"}, Body: "*"}),
		}}},
	}, protoregistry.GlobalFiles)
	if err != nil {
		return err
	}
	return protoregistry.GlobalFiles.RegisterFile(fd)
})

// heldServer serves heldItems on loopback with handler, mounted without
// kit's chain, and returns its URL.
func heldServer(tb testing.TB, handler http.HandlerFunc) string {
	tb.Helper()
	if err := heldItems(); err != nil {
		tb.Fatal(err)
	}
	srv, err := New(Config{Addr: "127.0.0.1:0", AdminAddr: AdminOff, MaxRequestBytes: 4 << 20, MaxResponseBytes: 4 << 20},
		WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		tb.Fatal(err)
	}
	srv.Mount("/connectkit.patchheld.v1.Items/", handler)
	if err := srv.Listen(); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Error(err)
		}
	})
	return "http://" + srv.Addr().String()
}

// heldPatch sends a PATCH of body to url and returns its answer.
func heldPatch(tb testing.TB, client *http.Client, url, body string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPatch, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// While its method runs, a PATCH's body is no longer held: Update's copy
// went once the mask was made of it, and Replace's, whose route fills no
// mask, was never kept. Both stayed held until the call ended, each up
// to KIT_MAX_REQUEST_BYTES, Replace's because another method of the
// server fills a mask.
func TestRESTPatchBodyNotHeldInHandler(t *testing.T) {
	t.Parallel()
	var held atomic.Int64
	url := heldServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if pb, ok := r.Context().Value(patchBodyKey{}).(*patchBody); !ok {
			held.Store(-1)
		} else {
			held.Store(int64(pb.sent.Cap()))
		}
		w.Header().Set("Content-Type", "application/proto")
		_, _ = w.Write(b)
	})
	text := strings.Repeat("x", 64<<10)
	for _, tc := range []struct{ path, body, mask string }{
		{"/v1/items/7", `{"text":"` + text + `"}`, `"mask":"text"`},
		{"/v1/items/7:replace", `{"inner":{"text":"` + text + `"}}`, `"mask":null`},
	} {
		status, body := heldPatch(t, http.DefaultClient, url+tc.path, tc.body)
		if status != http.StatusOK || !strings.Contains(body, tc.mask) || !strings.Contains(body, text) {
			t.Errorf("PATCH %s = %d %.200s, want 200 with %s", tc.path, status, body, tc.mask)
		}
		if n := held.Load(); n != 0 {
			t.Errorf("PATCH %s: the handler saw %d bytes of its body held, want 0 (-1: no body kept at all)", tc.path, n)
		}
	}
}

// BenchmarkRESTPatchHeld measures what n concurrent PATCHes of 1 MiB hold
// while their handlers run (heap-bytes-in-handlers: HeapInuse, after a GC,
// once all n are in their handler, less HeapInuse before they were sent),
// and, with -benchmem, what a PATCH of 1 KiB to a route that fills no mask
// allocates, client and server.
func BenchmarkRESTPatchHeld(b *testing.B) {
	const n = 8
	var (
		mu     sync.Mutex
		inside int
		all    chan struct{} // closed once n are inside; nil: no waiting
		heap   uint64
	)
	url := heldServer(b, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		wait := all
		if wait != nil {
			if inside++; inside == n {
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				heap = ms.HeapInuse
				close(wait)
			}
		}
		mu.Unlock()
		if wait != nil {
			<-wait
		}
		w.Header().Set("Content-Type", "application/proto")
		_, _ = w.Write(body[:0])
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	big := `{"text":"` + strings.Repeat("x", 1<<20) + `"}`
	b.Run("held", func(b *testing.B) {
		var sum float64
		for range b.N {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			mu.Lock()
			inside, all = 0, make(chan struct{})
			mu.Unlock()
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					if status, body := heldPatch(b, client, url+"/v1/items/7", big); status != http.StatusOK {
						b.Errorf("PATCH = %d %.200s", status, body)
					}
				})
			}
			wg.Wait()
			mu.Lock()
			sum += float64(heap) - float64(ms.HeapInuse)
			all = nil
			mu.Unlock()
		}
		b.ReportMetric(sum/float64(b.N), "heap-bytes-in-handlers")
	})
	small := `{"inner":{"text":"` + strings.Repeat("x", 1<<10) + `"}}`
	b.Run("unmasked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if status, body := heldPatch(b, client, url+"/v1/items/7:replace", small); status != http.StatusOK {
				b.Fatalf("PATCH = %d %.200s", status, body)
			}
		}
	})
}
