package pubsubtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
)

// testDeadLetterPages lists dead letters page by page over
// pubsub.DeadLetterHandler, as an operator with a backlog of them does:
// every dead letter comes once, in order, in pages of the limit, and a page
// after a dead letter re-driven meanwhile begins where it would have.
func testDeadLetterPages(t *testing.T, h *harness) {
	const n = 5
	sub := newSubscriber(t, h.broker, "pages", "s", newRecorder().handler(func(*pingv1.PingRequest, pubsub.MessageInfo) error {
		return pubsub.Permanent(errors.New("broken"))
	}), pubsub.WithDelivery(testDelivery()))
	Start(t, sub)
	pub := h.publisher(t, h.broker, "pages")
	for i := range n {
		if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: int64(i)}, pubsub.WithMessageID(fmt.Sprint("p-", i))); err != nil {
			t.Fatal(err)
		}
		waitDeadLetters(t, h.broker, "pages", "s", i+1) // stored in publishing order
	}
	srv := httptest.NewServer(pubsub.DeadLetterHandler(h.broker))
	t.Cleanup(srv.Close)
	type page struct {
		DeadLetters []struct{ Ref, ID string } `json:"dead_letters"`
		Next        string                     `json:"next"`
	}
	get := func(query string, want int) page {
		t.Helper()
		resp, err := http.Get(srv.URL + "/?topic=pages&" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p page
		if resp.StatusCode != want {
			t.Fatalf("GET ?%s: status %d, want %d", query, resp.StatusCode, want)
		}
		if want == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}

	var ids []string
	pages := 0
	for query := "limit=2"; ; pages++ {
		p := get(query, http.StatusOK)
		for _, dl := range p.DeadLetters {
			ids = append(ids, dl.ID)
		}
		if p.Next == "" || pages > n {
			break
		}
		if last := p.DeadLetters[len(p.DeadLetters)-1].Ref; p.Next != last {
			t.Errorf("next = %q, want the last listed ref %q", p.Next, last)
		}
		query = "limit=2&after=" + p.Next
	}
	if want := []string{"p-0", "p-1", "p-2", "p-3", "p-4"}; !slices.Equal(ids, want) || pages != 2 {
		t.Fatalf("pages of 2 listed %v in %d pages after the first, want %v in 2", ids, pages, want)
	}

	// The dead letter a page ended on is re-driven (it comes back, at the
	// end): the next page still begins with the one after it.
	first := get("limit=2", http.StatusOK)
	var cursor *pubsub.DeadLetter
	for dl, err := range h.broker.DeadLetters(t.Context(), "pages", "s") {
		if err != nil {
			t.Fatal(err)
		}
		if dl.Ref == first.Next {
			cursor = dl
			break
		}
	}
	if cursor == nil {
		t.Fatalf("no dead letter with the ref %q", first.Next)
	}
	if err := h.broker.Redrive(t.Context(), cursor); err != nil {
		t.Fatal(err)
	}
	waitDeadLetters(t, h.broker, "pages", "s", n) // p-1 is back, at the end
	p := get("limit=2&after="+first.Next, http.StatusOK)
	if len(p.DeadLetters) != 2 || p.DeadLetters[0].ID != "p-2" || p.DeadLetters[1].ID != "p-3" {
		t.Errorf("the page after a re-driven dead letter lists %+v, want p-2 and p-3", p.DeadLetters)
	}

	get("limit=0", http.StatusBadRequest)
	get("limit=1001", http.StatusBadRequest)
	get("limit=two", http.StatusBadRequest)
	get("after=nonsense", http.StatusBadRequest)
	if p := get("", http.StatusOK); len(p.DeadLetters) != n || p.Next != "" {
		t.Errorf("a listing without limit shows %d dead letters and next %q, want %d and none", len(p.DeadLetters), p.Next, n)
	}
}
