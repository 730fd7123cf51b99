// Command example serves example.v1.ProfileService with connectkit: gRPC,
// gRPC-Web and Connect on :8080, the admin endpoints on 127.0.0.1:9090, and
// an embedded NATS JetStream broker (or the cluster at NATS_URL) that carries
// a ProfileChanged event for every change to the audit log's subscriber.
// Configure it with the KIT_* and NATS_* environment variables, or with
// flags named after the KIT_* ones (-addr, -admin-addr, -log-level...; see
// -help and the README). With EXAMPLE_API_TOKENS (token=caller pairs,
// comma-separated) set, its calls need one of those bearer tokens.
//
// `example list [-target http://localhost:8080]` is a client of a running
// example instead: it prints its profiles, called through kit's HTTP client
// and client chain as one service calls another, with the bearer token
// in EXAMPLE_API_TOKEN when set.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
	"github.com/connectkit/connectkit/gen/example/v1/examplev1connect"
	"github.com/connectkit/connectkit/health"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
)

func main() {
	run := run
	if len(os.Args) > 1 && os.Args[1] == "list" { // example list [-target URL]: see runList
		run = func(ctx context.Context) error { return runList(ctx, os.Args[2:], os.Stdout, os.Stderr) }
	}
	if err := run(context.Background()); err != nil {
		os.Exit(exitCode(os.Stderr, err))
	}
}

// errUsage marks the error of a command line that flag refused: flag has
// printed why, with the usage.
var errUsage = errors.New("bad command line")

// exitCode prints err on stderr and returns the exit status for it: 2,
// printing nothing more, for a command line flag refused and explained, as
// flag.ExitOnError exits; 1 otherwise.
func exitCode(stderr io.Writer, err error) int {
	if errors.Is(err, errUsage) {
		return 2
	}
	fmt.Fprintln(stderr, "example:", err)
	return 1
}

func run(ctx context.Context) (err error) {
	cfg, err := kit.ConfigFromEnv()
	if err != nil {
		return err
	}
	cfg.RegisterFlags(flag.CommandLine) // flags override the environment: -addr :8081
	flag.Parse()
	if err := noArguments(flag.CommandLine); err != nil {
		return err
	}
	natsCfg, err := natsjs.ConfigFromEnv()
	if err != nil {
		return err
	}
	tokens, err := parseAPITokens(os.Getenv("EXAMPLE_API_TOKENS"))
	if err != nil {
		return err
	}
	var opts []kit.Option
	if tokens != nil { // off by default: every caller is served
		opts = append(opts, kit.WithAuth(tokens.authenticate))
	}
	srv, err := kit.New(cfg, opts...)
	if err != nil {
		return err
	}
	bus, err := natsjs.New(ctx, natsCfg, natsjs.WithLogger(srv.Logger()))
	if err != nil {
		return err
	}
	// After Run has drained the subscribers: flush acknowledgements, then
	// stop the embedded server, last.
	defer func() { err = errors.Join(err, bus.Close()) }()
	if err := wire(srv, bus); err != nil {
		return err
	}
	return srv.Run(ctx)
}

// wire mounts the example's services on srv, with the change events
// published on bus and the audit log's subscriber running under srv.
func wire(srv *kit.Server, bus pubsub.Broker) error {
	// The same interceptor chain, logger and registry as the RPCs.
	opts := []pubsub.Option{
		pubsub.WithClientOptions(srv.ClientOptions()...),
		pubsub.WithHandlerOptions(srv.HandlerOptions()...),
		pubsub.WithLogger(srv.Logger()),
		pubsub.WithRegistry(srv.Registry()),
	}
	changes, err := pubsub.NewPublisher[examplev1.ProfileChanged](bus, changesTopic, opts...)
	if err != nil {
		return err
	}
	audit := newAuditLog()
	// Longer than the five default attempts can take to come again (their
	// AckWaits and backoffs: ~3 minutes); at most 100 000 keys, ~20 MB.
	seen := pubsub.NewMemoryIdempotencyStore(10*time.Minute, 100_000)
	auditor, err := pubsub.NewSubscriber(bus, changesTopic, "audit", pubsub.Idempotent(seen, audit.record), opts...)
	if err != nil {
		return err
	}
	srv.Go(auditor.Run)
	srv.MountAdmin("/pubsub/dead-letters/", "dead letters: GET list (?limit=N&after=R), POST redrive?ref=R, DELETE ?ref=R",
		pubsub.DeadLetterHandler(bus))
	for _, c := range []health.Check{
		{Name: "broker", Func: bus.Check},
		{Name: "audit-subscriber", Func: auditor.Check},
	} {
		if err := srv.Health().AddCheck(c); err != nil {
			return err
		}
	}

	svc := newProfileService(newMemStore(), changes, audit, srv.ShuttingDown())
	srv.Mount(examplev1connect.NewProfileServiceHandler(svc, srv.HandlerOptions()...))
	return nil
}

// noArguments fails when fs left arguments after its flags: the value of a
// boolean flag given apart (-pprof false) ends the flags, and the flags
// after it would be dropped unseen.
func noArguments(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: flags only (a boolean flag takes its value as -pprof=false)", fs.Arg(0))
	}
	return nil
}
