package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
	"github.com/connectkit/connectkit/gen/example/v1/examplev1connect"
	"github.com/connectkit/connectkit/kit"
)

// listTimeout bounds the whole listing: kit's client gives calls no
// deadline of its own.
const listTimeout = 30 * time.Second

// closeTimeout bounds Close at the end of the listing.
const closeTimeout = 5 * time.Second

// runList is `example list`: it lists the profiles of a running example,
// one JSON object a line on stdout, calling it as one service calls
// another, through srv.HTTPClient() and srv.ClientOptions(): the client
// chain (logs, metrics, traces, request ids) and, when the KIT_CLIENT_*
// variables or flags turn them on, retries and the circuit breaker.
// ListProfiles is NO_SIDE_EFFECTS, so KIT_CLIENT_RETRY=on retries it. Its
// log level is warn unless KIT_LOG_LEVEL or -log-level says otherwise, so
// that stderr holds only failures. The server is never run (nothing
// listens): Close ends it, writing its last log lines and spans. The
// usage, and why a command line is refused, go to stderr; a refused one
// fails with errUsage.
func runList(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	cfg, err := kit.ConfigFromEnv()
	if err != nil {
		return err
	}
	if os.Getenv("KIT_LOG_LEVEL") == "" {
		cfg.LogLevel = slog.LevelWarn
	}
	fs := flag.NewFlagSet("example list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	target := fs.String("target", "http://localhost:8080", "base URL of the example to call")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // the usage is printed: exit 0, as `example -help` does
		}
		// flag printed the error and the usage: main prints it no more.
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if err := noArguments(fs); err != nil {
		return err
	}
	// It serves nothing: a service's KIT_ADMIN_* settings, which it may
	// share (kubectl exec into the service's Pod), do not apply.
	cfg.AdminAddr = kit.AdminOff
	srv, err := kit.New(cfg)
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		err = errors.Join(err, srv.Close(ctx))
	}()
	client := examplev1connect.NewProfileServiceClient(srv.HTTPClient(), *target, srv.ClientOptions()...)
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	req := &examplev1.ListProfilesRequest{}
	for {
		res, err := client.ListProfiles(ctx, connect.NewRequest(req))
		if err != nil {
			return fmt.Errorf("listing the profiles of %s: %w", *target, err)
		}
		for _, p := range res.Msg.GetProfiles() {
			line, err := protojson.Marshal(p)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
				return err
			}
		}
		if req.PageToken = res.Msg.GetNextPageToken(); req.PageToken == "" {
			return nil
		}
	}
}
