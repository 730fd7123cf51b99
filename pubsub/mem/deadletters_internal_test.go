package mem

import (
	"fmt"
	"net/http"
	"runtime"
	"testing"

	"github.com/connectkit/connectkit/pubsub"
)

// TestDeadLetterPageCopiesAPage checks that a page of dead letters costs
// what it lists, not the whole backlog: DeadLetterHandler's pages bound
// its answers, and mem copied every dead letter after the page's start to
// answer one page of them. Bytes are counted, not time. Not parallel: it
// reads the whole process's allocations.
func TestDeadLetterPageCopiesAPage(t *testing.T) {
	b := New()
	t.Cleanup(func() { _ = b.Close() })
	const backlog = 10000
	for i := range backlog {
		dl := &pubsub.DeadLetter{
			Message:      pubsub.Message{ID: fmt.Sprint("m-", i), Topic: "t", Header: http.Header{"Pubsub-Type": {"acme.v1.Event"}}},
			Subscription: "s", Reason: pubsub.ReasonPermanent,
		}
		if err := b.DeadLetter(t.Context(), dl); err != nil {
			t.Fatal(err)
		}
	}
	page := func() []string {
		var refs []string
		for dl, err := range b.DeadLettersAfter(t.Context(), "t", "s", "100") {
			if err != nil {
				t.Fatal(err)
			}
			if refs = append(refs, dl.Ref); len(refs) == 3 {
				break
			}
		}
		return refs
	}
	page() // warm up
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	refs := page()
	runtime.ReadMemStats(&after)
	if fmt.Sprint(refs) != "[101 102 103]" {
		t.Fatalf("the page after 100 holds %v, want [101 102 103]", refs)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 256<<10 {
		t.Errorf("a page of 3 of %d dead letters allocated %d bytes, want under 256KiB: the backlog is copied", backlog, n)
	}
}

// TestDeadLettersAcrossChunks lists, by a filter, more dead letters than a
// chunk holds while each one listed is deleted and a new one stored, as a
// re-drive of them all does when the handler still fails: each is listed
// once, in order, and the listing ends without those stored meanwhile.
func TestDeadLettersAcrossChunks(t *testing.T) {
	t.Parallel()
	b := New()
	t.Cleanup(func() { _ = b.Close() })
	store := func(sub string) {
		t.Helper()
		dl := &pubsub.DeadLetter{Message: pubsub.Message{Topic: "t"}, Subscription: sub, Reason: pubsub.ReasonPermanent}
		if err := b.DeadLetter(t.Context(), dl); err != nil {
			t.Fatal(err)
		}
	}
	const n = 5*deadChunkSize + 3
	for i := range 2 * n {
		store([]string{"a", "b"}[i%2])
	}
	var got []uint64
	for dl, err := range b.DeadLetters(t.Context(), "", "a") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, deadSeq(dl))
		if err := b.DeleteDeadLetter(t.Context(), dl); err != nil {
			t.Fatal(err)
		}
		store("a")
	}
	if len(got) != n {
		t.Fatalf("listed %d dead letters of subscription a, want %d", len(got), n)
	}
	for i, seq := range got {
		if want := uint64(2*i + 1); seq != want {
			t.Fatalf("dead letter %d has ref %d, want %d", i, seq, want)
		}
	}
}
