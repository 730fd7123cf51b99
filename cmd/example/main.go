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
	"log/slog"
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
	if len(os.Args) > 1 && os.Args[1] == "list" { // example list [-target URL]: see runList
		if err := runList(context.Background(), os.Args[2:], os.Stdout, os.Stderr); err != nil {
			os.Exit(exitCode(os.Stderr, err))
		}
		return
	}
	if logger, err := run(context.Background()); err != nil {
		os.Exit(serverExitCode(logger, err))
	}
}

// errUsage marks the error of a command line that flag refused: flag has
// printed why, with the usage.
var errUsage = errors.New("bad command line")

// exitCode prints err on stderr and returns the exit status for it: 2,
// printing nothing more, for a command line flag refused and explained, as
// flag.ExitOnError exits; 1 otherwise. It is example list's: a command's
// error for the person who typed it.
func exitCode(stderr io.Writer, err error) int {
	if errors.Is(err, errUsage) {
		return 2
	}
	fmt.Fprintln(stderr, "example:", err)
	return 1
}

// serverExitCode logs err, the server's failure to start or to stop
// cleanly, at error on logger, and returns the exit status for it, as
// [exitCode] does: a log pipeline that reads the server's JSON lines
// would drop a plain-text line, and the one saying why it exited matters
// most. A command line flag refused is flag's to explain, on a terminal.
func serverExitCode(logger *slog.Logger, err error) int {
	if errors.Is(err, errUsage) {
		return 2
	}
	logger.LogAttrs(context.Background(), slog.LevelError, "example: exiting", slog.String("error", err.Error()))
	return 1
}

// run serves until ctx is done or the process is signalled. It returns
// the logger its error, if any, is to be logged on: in KIT_LOG_FORMAT
// until the flags are read, in the configured format then, and the
// server's own once there is one, which writes its own lines first.
func run(ctx context.Context) (logger *slog.Logger, err error) {
	logger = kit.NewLogger(os.Stderr, os.Getenv("KIT_LOG_FORMAT"), slog.LevelInfo)
	cfg, err := kit.ConfigFromEnv()
	if err != nil {
		return logger, err
	}
	cfg.RegisterFlags(flag.CommandLine) // flags override the environment: -addr :8081
	flag.Parse()
	logger = kit.NewLogger(os.Stderr, cfg.LogFormat, cfg.LogLevel)
	if err := noArguments(flag.CommandLine); err != nil {
		return logger, err
	}
	natsCfg, err := natsjs.ConfigFromEnv()
	if err != nil {
		return logger, err
	}
	tokens, err := parseAPITokens(os.Getenv("EXAMPLE_API_TOKENS"))
	if err != nil {
		return logger, err
	}
	var opts []kit.Option
	if tokens != nil { // off by default: every caller is served
		opts = append(opts, kit.WithAuth(tokens.authenticate))
	}
	srv, err := kit.New(cfg, opts...)
	if err != nil {
		return logger, err
	}
	logger = srv.Logger()
	bus, err := natsjs.New(ctx, natsCfg, natsjs.WithLogger(srv.Logger()))
	if err != nil {
		return logger, err
	}
	// After Run has drained the subscribers: flush acknowledgements, then
	// stop the embedded server, last.
	defer func() { err = errors.Join(err, bus.Close()) }()
	if err := wire(srv, bus); err != nil {
		return logger, err
	}
	return logger, srv.Run(ctx)
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
