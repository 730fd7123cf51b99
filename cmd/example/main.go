// Command example serves example.v1.ProfileService with connectkit: gRPC,
// gRPC-Web and Connect on :8080, the admin endpoints on 127.0.0.1:9090.
// Configure it with the KIT_* environment variables (see the README).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/connectkit/connectkit/gen/example/v1/examplev1connect"
	"github.com/connectkit/connectkit/kit"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := kit.ConfigFromEnv()
	if err != nil {
		return err
	}
	srv, err := kit.New(cfg)
	if err != nil {
		return err
	}
	wire(srv)
	return srv.Run(ctx)
}

// wire mounts the example's services on srv.
func wire(srv *kit.Server) {
	svc := newProfileService(newMemStore(), srv.ShuttingDown())
	srv.Mount(examplev1connect.NewProfileServiceHandler(svc, srv.HandlerOptions()...))
}
