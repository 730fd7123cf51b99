package natsjs

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/connectkit/connectkit/pubsub"
	"github.com/nats-io/nats.go/jetstream"
)

// IdempotencyStore is a [pubsub.IdempotencyStore] in a JetStream key-value
// bucket: shared by every instance of a subscription, and kept on disk.
type IdempotencyStore struct {
	kv jetstream.KeyValue
}

var _ pubsub.IdempotencyStore = (*IdempotencyStore)(nil)

// NewIdempotencyStore creates or updates the key-value bucket named bucket
// (ASCII letters, digits, '-' and '_', as JetStream requires), whose keys
// expire after ttl, with the broker's Config.Replicas (left unset, an
// existing bucket's are kept), and returns a store on it. ttl must be positive: make it
// longer than a message can take to be redelivered (AckWait plus the
// backoffs). Give every instance of a subscription the same bucket; the
// keys name the topic and subscription, so subscriptions may share one.
func NewIdempotencyStore(ctx context.Context, b *Broker, bucket string, ttl time.Duration) (*IdempotencyStore, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("natsjs: idempotency store %q: ttl %v must be positive", bucket, ttl)
	}
	replicas := b.cfg.Replicas
	if !b.replicasSet {
		// The default, 1, leaves an existing bucket's replicas as they
		// are, as it does a stream's (Config.Replicas).
		s, err := b.lookupStream(ctx, "KV_"+bucket)
		switch {
		case err == nil:
			replicas = s.CachedInfo().Config.Replicas
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			// Not known to be missing: the default would set it to 1.
			return nil, fmt.Errorf("natsjs: failed to look up idempotency bucket %q: %w", bucket, err)
		}
	}
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "pubsub idempotency keys",
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("natsjs: failed to create idempotency bucket %q: %w", bucket, err)
	}
	return &IdempotencyStore{kv: kv}, nil
}

// kvKey makes any key a valid key-value key (letters, digits, '-', '_').
func kvKey(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }

// Seen implements [pubsub.IdempotencyStore].
func (s *IdempotencyStore) Seen(ctx context.Context, key string) (bool, error) {
	_, err := s.kv.Get(ctx, kvKey(key))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	default:
		return false, err
	}
}

// Record implements [pubsub.IdempotencyStore].
func (s *IdempotencyStore) Record(ctx context.Context, key string) error {
	_, err := s.kv.Put(ctx, kvKey(key), nil)
	return err
}
