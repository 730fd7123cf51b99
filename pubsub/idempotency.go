package pubsub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// IdempotencyStore remembers which messages a subscription handled. Stores
// shared by the instances of a subscription (natsjs.NewIdempotencyStore, a
// JetStream key-value bucket) make [Idempotent] hold across instances; an
// in-process [MemoryIdempotencyStore] holds within one process.
type IdempotencyStore interface {
	// Seen reports whether key was recorded (and has not expired).
	Seen(ctx context.Context, key string) (bool, error)
	// Record records key.
	Record(ctx context.Context, key string) error
}

// Idempotent wraps a handler so that a message the subscription already
// handled successfully is acknowledged without calling handle again. It is
// what at-least-once delivery needs when a message acknowledged just before a
// crash comes again. The key is the topic, subscription and message id.
//
// It narrows duplicates, it does not remove them all: two deliveries of one
// message running at once (a redelivery after AckWait while the first still
// runs) both call handle, and a crash between handle's success and the
// record repeats it. Where an effect must happen once, record the message id
// in the same transaction as the effect (a unique key in your database).
//
// A store that fails fails the delivery, which is retried.
func Idempotent[M any](store IdempotencyStore, handle func(context.Context, *M) error) func(context.Context, *M) error {
	return func(ctx context.Context, msg *M) error {
		info, ok := MessageInfoFrom(ctx)
		if !ok || info.ID == "" {
			return handle(ctx, msg)
		}
		key := info.Topic + "/" + info.Subscription + "/" + info.ID
		seen, err := store.Seen(ctx, key)
		if err != nil {
			return fmt.Errorf("pubsub: idempotency store: %w", err)
		}
		if seen {
			return nil
		}
		if err := handle(ctx, msg); err != nil {
			return err
		}
		if err := store.Record(ctx, key); err != nil {
			return fmt.Errorf("pubsub: handled, but failed to record it in the idempotency store: %w", err)
		}
		return nil
	}
}

// MemoryIdempotencyStore is an in-process [IdempotencyStore] that remembers
// keys for a time. It is safe for concurrent use.
type MemoryIdempotencyStore struct {
	ttl time.Duration
	max int

	mu    sync.Mutex
	keys  map[string]time.Time
	order []recorded // by time: every key shares the ttl, so the oldest expire first
}

type recorded struct {
	key string
	at  time.Time
}

// NewMemoryIdempotencyStore returns a store that remembers a key for ttl, and
// at most maxKeys keys. Make ttl longer than a message can take to be
// redelivered (AckWait plus the backoffs); the oldest keys are forgotten first
// when full, and maxKeys 0 means 1<<20. A key takes about 150–200 bytes, so the
// default bound is about 200 MB; expired keys are dropped as new ones come.
// It panics if ttl is 0 or less: such a store would remember nothing and
// make [Idempotent] a silent no-op. natsjs.NewIdempotencyStore refuses such a
// ttl with an error, and Watermill's deduplicator panics likewise on a window
// too short; a ttl is fixed when func main wires the handlers, so a bad one is
// a programming error, not bad input to serve around.
func NewMemoryIdempotencyStore(ttl time.Duration, maxKeys int) *MemoryIdempotencyStore {
	if ttl <= 0 {
		panic(fmt.Sprintf("pubsub: NewMemoryIdempotencyStore(%v, %d): ttl must be positive", ttl, maxKeys))
	}
	if maxKeys <= 0 {
		maxKeys = 1 << 20
	}
	return &MemoryIdempotencyStore{ttl: ttl, max: maxKeys, keys: make(map[string]time.Time)}
}

var errEmptyKey = errors.New("pubsub: empty idempotency key")

// Seen implements [IdempotencyStore].
func (s *MemoryIdempotencyStore) Seen(_ context.Context, key string) (bool, error) {
	if key == "" {
		return false, errEmptyKey
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.keys[key]
	return ok && time.Since(at) < s.ttl, nil
}

// Record implements [IdempotencyStore].
func (s *MemoryIdempotencyStore) Record(_ context.Context, key string) error {
	if key == "" {
		return errEmptyKey
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	_, held := s.keys[key] // recorded again, it takes no room of another's
	for len(s.order) > 0 && ((!held && len(s.keys) >= s.max) || now.Sub(s.order[0].at) >= s.ttl) {
		old := s.order[0]
		s.order[0] = recorded{}
		s.order = s.order[1:]
		if s.keys[old.key] == old.at { // not recorded again since
			delete(s.keys, old.key)
		}
	}
	s.keys[key] = now
	s.order = append(s.order, recorded{key: key, at: now})
	if len(s.order) > 2*len(s.keys)+compactSlack {
		s.compact()
	}
	return nil
}

// compactSlack is how many more entries than twice its keys the order may
// hold before [MemoryIdempotencyStore.compact] runs.
const compactSlack = 64

// compact drops the entries of keys recorded again since, which a key
// recorded over and over within the ttl would otherwise pile up in order
// (each Record appends one): order stays under twice the keys, and compact,
// dropping at least half of it, costs O(1) a Record over time.
func (s *MemoryIdempotencyStore) compact() {
	kept := s.order[:0]
	for _, r := range s.order {
		if s.keys[r.key] == r.at {
			kept = append(kept, r)
		}
	}
	clear(s.order[len(kept):])
	s.order = kept
}
