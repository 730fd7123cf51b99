package main

import (
	"context"
	"errors"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
)

// errNotFound is returned by a store for a profile it does not hold.
var errNotFound = errors.New("profile not found")

// store keeps profiles. The service depends on this interface only, so a
// database-backed store replaces memStore without touching the service.
type store interface {
	// Create stores p, whose Id is set and unused.
	Create(ctx context.Context, p *examplev1.Profile) error
	// Get returns the profile with id, or errNotFound.
	Get(ctx context.Context, id string) (*examplev1.Profile, error)
	// List returns up to limit profiles with ids greater than after, in id
	// order, and whether more follow.
	List(ctx context.Context, after string, limit int) ([]*examplev1.Profile, bool, error)
	// Update applies change to the profile with id and returns the result,
	// or errNotFound.
	Update(ctx context.Context, id string, change func(*examplev1.Profile)) (*examplev1.Profile, error)
	// Delete removes the profile with id and returns it, or errNotFound.
	Delete(ctx context.Context, id string) (*examplev1.Profile, error)
}

// memStore is an in-memory store. Profiles are copied in and out, so
// callers never share a message with the store.
type memStore struct {
	mu       sync.RWMutex
	profiles map[string]*examplev1.Profile
	ids      []string // sorted
}

func newMemStore() *memStore {
	return &memStore{profiles: make(map[string]*examplev1.Profile)}
}

func (s *memStore) Create(_ context.Context, p *examplev1.Profile) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := slices.BinarySearch(s.ids, p.GetId())
	if found {
		return errors.New("duplicate profile id")
	}
	s.ids = slices.Insert(s.ids, i, p.GetId())
	s.profiles[p.GetId()] = proto.CloneOf(p)
	return nil
}

func (s *memStore) Get(_ context.Context, id string) (*examplev1.Profile, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.profiles[id]
	if !ok {
		return nil, errNotFound
	}
	return proto.CloneOf(p), nil
}

func (s *memStore) List(_ context.Context, after string, limit int) ([]*examplev1.Profile, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, found := slices.BinarySearch(s.ids, after)
	if found {
		i++
	}
	end := min(i+limit, len(s.ids))
	out := make([]*examplev1.Profile, 0, end-i)
	for _, id := range s.ids[i:end] {
		out = append(out, proto.CloneOf(s.profiles[id]))
	}
	return out, end < len(s.ids), nil
}

func (s *memStore) Update(_ context.Context, id string, change func(*examplev1.Profile)) (*examplev1.Profile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.profiles[id]
	if !ok {
		return nil, errNotFound
	}
	p = proto.CloneOf(p)
	change(p)
	s.profiles[id] = p
	return proto.CloneOf(p), nil
}

func (s *memStore) Delete(_ context.Context, id string) (*examplev1.Profile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.profiles[id]
	if !ok {
		return nil, errNotFound
	}
	delete(s.profiles, id)
	if i, found := slices.BinarySearch(s.ids, id); found {
		s.ids = slices.Delete(s.ids, i, i+1)
	}
	return p, nil
}
