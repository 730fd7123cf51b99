package main

import (
	"context"
	"slices"
	"sync"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
	"github.com/connectkit/connectkit/interceptors"
)

// changesTopic is where the service publishes a ProfileChanged on every
// change; the "audit" subscription builds the audit log from it.
const changesTopic = "profiles.changed"

// maxEntries bounds the changes the audit log keeps.
const maxEntries = 10000

// auditLog is a projection of the ProfileChanged events, which
// ListProfileChanges reads. It is built by a subscriber, so it trails the
// store by the time an event takes to go through the broker.
type auditLog struct {
	mu      sync.RWMutex
	entries []*examplev1.ProfileChanged // sorted by change time
}

func newAuditLog() *auditLog { return &auditLog{} }

// record is the audit subscription's handler. It is wrapped in
// pubsub.Idempotent, so a message delivered again (at-least-once) is not
// recorded twice. Deliveries are handled concurrently and may arrive out of
// order: entries are kept sorted by change time.
func (a *auditLog) record(ctx context.Context, change *examplev1.ProfileChanged) error {
	a.mu.Lock()
	i, _ := slices.BinarySearchFunc(a.entries, change, func(x, y *examplev1.ProfileChanged) int {
		return x.GetChangeTime().AsTime().Compare(y.GetChangeTime().AsTime())
	})
	a.entries = slices.Insert(a.entries, i, change)
	if len(a.entries) > maxEntries {
		a.entries = slices.Delete(a.entries, 0, len(a.entries)-maxEntries)
	}
	a.mu.Unlock()
	interceptors.LoggerFrom(ctx).Debug("audited", "profile_id", change.GetProfile().GetId(), "kind", change.GetKind().String())
	return nil
}

// changes returns the recorded changes of the profile with id (of every
// profile when id is empty), oldest first.
func (a *auditLog) changes(id string) []*examplev1.ProfileChanged {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var out []*examplev1.ProfileChanged
	for _, c := range a.entries {
		if id == "" || c.GetProfile().GetId() == id {
			out = append(out, c)
		}
	}
	return out
}
