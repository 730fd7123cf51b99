package health_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/connectkit/connectkit/health"
)

// database stands for a *sql.DB.
type database struct{}

func (database) PingContext(context.Context) error { return nil }

func Example() {
	checker := health.New()
	checker.AddService("example.v1.ProfileService") // kit's Mount does this

	// Pull model: pinged on each probe. Set Interval to ping in the
	// background instead, under checker.Run.
	if err := checker.AddCheck(health.PingCheck("postgres", database{})); err != nil {
		panic(err)
	}
	// Push model: a component reports its own state.
	subscriber, err := checker.AddReporter(health.Check{Name: "profile-events"})
	if err != nil {
		panic(err)
	}

	ready := checker.ReadyHandler() // GET /readyz
	probe := func(when string) {
		rec := httptest.NewRecorder()
		ready.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		fmt.Println(when, rec.Code)
	}
	probe("starting:") // the subscriber has not reported yet
	subscriber.Report(nil)
	probe("subscribed:")
	subscriber.Report(errors.New("connection lost"))
	probe("subscriber down:")
	subscriber.Report(nil)
	probe("subscriber back:")
	checker.Shutdown() // first thing on SIGTERM
	probe("shutting down:")
	// Output:
	// starting: 503
	// subscribed: 200
	// subscriber down: 503
	// subscriber back: 200
	// shutting down: 503
}
