package pubsub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
)

// Operators list and re-drive dead letters over HTTP, on kit's admin
// listener (behind KIT_ADMIN_TOKEN when it is set), never on the main port.
func ExampleDeadLetterHandler() {
	broker := mem.New() // or natsjs.New(ctx, natsjs.Config{})
	defer broker.Close()
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"},
		kit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.MountAdmin("/pubsub/dead-letters/", "dead letters: GET list, POST redrive?ref=R, DELETE ?ref=R",
		pubsub.DeadLetterHandler(broker))

	var fixed atomic.Bool
	handled := make(chan int64)
	sub, err := pubsub.NewSubscriber(broker, "orders", "billing", func(_ context.Context, msg *pingv1.PingRequest) error {
		if !fixed.Load() {
			return pubsub.Permanent(errors.New("unknown currency"))
		}
		handled <- msg.GetNumber()
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.Go(sub.Run)
	if err := srv.Listen(); err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	pub, err := pubsub.NewPublisher[pingv1.PingRequest](broker, "orders")
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := pub.Publish(ctx, &pingv1.PingRequest{Number: 42}, pubsub.WithMessageID("order-42")); err != nil {
		fmt.Println(err)
		return
	}

	admin := "http://" + srv.AdminAddr().String() + "/pubsub/dead-letters/"
	var listing struct {
		DeadLetters []struct {
			Ref, ID, Subscription, Reason, Error string
			Attempts                             int
			Payload                              json.RawMessage
		} `json:"dead_letters"`
	}
	for len(listing.DeadLetters) == 0 { // the subscriber dead-letters the message soon
		time.Sleep(time.Millisecond)
		res, err := http.Get(admin + "?topic=orders&subscription=billing")
		if err != nil {
			fmt.Println(err)
			return
		}
		err = json.NewDecoder(res.Body).Decode(&listing)
		res.Body.Close()
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	dl := listing.DeadLetters[0]
	fmt.Println(dl.ID, dl.Subscription, dl.Reason, dl.Attempts, dl.Error, string(dl.Payload))

	fixed.Store(true) // the handler is fixed and deployed: re-drive
	res, err := http.Post(admin+"redrive?ref="+url.QueryEscape(dl.Ref), "", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	fmt.Println(res.Status, strings.TrimSpace(string(body)))
	fmt.Println("handled", <-handled)

	stop()
	fmt.Println("clean shutdown:", <-done == nil)
	// Output:
	// order-42 billing permanent 1 unknown currency {"number":"42"}
	// 200 OK {"redriven":1}
	// handled 42
	// clean shutdown: true
}
