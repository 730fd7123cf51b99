package health_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/connectkit/connectkit/health"
)

// TestReadyAndLive checks that Ready and Live run the on-probe checks and
// agree with /readyz and /healthz: critical checks that fail or are
// pending are named, non-critical ones change nothing, and Shutdown makes
// the server not ready while leaving liveness alone.
func TestReadyAndLive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := health.New()
	var dbErr error
	for _, c := range []health.Check{
		{Name: "db", Func: func(context.Context) error { return dbErr }},
		{Name: "geoip", NonCritical: true, Func: func(context.Context) error { return errors.New("down") }},
		{Name: "loop", Liveness: true, Func: func(context.Context) error { return nil }},
	} {
		if err := h.AddCheck(c); err != nil {
			t.Fatal(err)
		}
	}
	events, err := h.AddReporter(health.Check{Name: "events"})
	if err != nil {
		t.Fatal(err)
	}
	heart, err := h.AddReporter(health.Check{Name: "heart", Liveness: true})
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, got bool, failing []string, want bool, wantFailing ...string) {
		t.Helper()
		if got != want || !slices.Equal(failing, wantFailing) {
			t.Errorf("%s: %v, failing %q; want %v, failing %q", name, got, failing, want, wantFailing)
		}
	}
	serving, failing := h.Ready(ctx)
	check("Ready with a pending reporter", serving, failing, false, "events")
	live, failing := h.Live(ctx)
	check("Live with a pending reporter", live, failing, false, "heart")

	events.Report(nil)
	heart.Report(nil)
	dbErr = errors.New("refused")
	serving, failing = h.Ready(ctx)
	check("Ready with db failing", serving, failing, false, "db")
	dbErr = nil
	serving, failing = h.Ready(ctx)
	check("Ready", serving, failing, true)
	live, failing = h.Live(ctx)
	check("Live", live, failing, true)

	h.Shutdown()
	serving, failing = h.Ready(ctx)
	check("Ready after Shutdown", serving, failing, false)
	live, failing = h.Live(ctx)
	check("Live after Shutdown", live, failing, true)

	// Once shut down, the checks run no more: failing names those whose
	// last result failed.
	events.Report(errors.New("lagging"))
	serving, failing = h.Ready(ctx)
	check("Ready after Shutdown, a check failing", serving, failing, false, "events")
}
