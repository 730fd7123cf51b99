package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
	"github.com/connectkit/connectkit/gen/example/v1/examplev1connect"
	"github.com/connectkit/connectkit/pubsub"
)

const defaultPageSize = 50

// profileService implements examplev1connect.ProfileServiceHandler on a
// store. Requests arrive validated (protovalidate rules in the proto, checked
// by kit's interceptor chain), so the handlers only check what the rules
// cannot express. Every change is streamed to watchers and published on the
// broker.
type profileService struct {
	store    store
	hub      *hub
	events   publisher
	audit    *auditLog
	stopping <-chan struct{} // closed at server shutdown: ends watch streams
	now      func() time.Time
}

// publisher publishes change events; *pubsub.Publisher implements it.
type publisher interface {
	Publish(ctx context.Context, change *examplev1.ProfileChanged, opts ...pubsub.PublishOption) error
}

var _ examplev1connect.ProfileServiceHandler = (*profileService)(nil)

func newProfileService(s store, events publisher, audit *auditLog, stopping <-chan struct{}) *profileService {
	return &profileService{store: s, hub: newHub(), events: events, audit: audit, stopping: stopping, now: time.Now}
}

func (s *profileService) CreateProfile(ctx context.Context, req *connect.Request[examplev1.CreateProfileRequest]) (*connect.Response[examplev1.CreateProfileResponse], error) {
	p, err := s.create(ctx, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&examplev1.CreateProfileResponse{Profile: p}), nil
}

func (s *profileService) create(ctx context.Context, req *examplev1.CreateProfileRequest) (*examplev1.Profile, error) {
	id, err := uuid.NewV7() // time-ordered: listing by id lists by creation
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("failed to create id: %w", err))
	}
	now := timestamppb.New(s.now())
	p := &examplev1.Profile{Id: id.String(), Name: req.GetName(), Email: req.GetEmail(), CreateTime: now, UpdateTime: now}
	if err := s.store.Create(ctx, p); err != nil {
		return nil, storeError(err)
	}
	if err := s.changed(ctx, examplev1.ProfileChanged_KIND_CREATED, p); err != nil {
		return nil, err
	}
	return p, nil
}

func (s *profileService) GetProfile(ctx context.Context, req *connect.Request[examplev1.GetProfileRequest]) (*connect.Response[examplev1.GetProfileResponse], error) {
	p, err := s.store.Get(ctx, req.Msg.GetId())
	if err != nil {
		return nil, storeError(err)
	}
	return connect.NewResponse(&examplev1.GetProfileResponse{Profile: p}), nil
}

func (s *profileService) ListProfiles(ctx context.Context, req *connect.Request[examplev1.ListProfilesRequest]) (*connect.Response[examplev1.ListProfilesResponse], error) {
	after, err := decodePageToken(req.Msg.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := int(req.Msg.GetPageSize())
	if size == 0 {
		size = defaultPageSize
	}
	profiles, more, err := s.store.List(ctx, after, size)
	if err != nil {
		return nil, storeError(err)
	}
	res := &examplev1.ListProfilesResponse{Profiles: profiles}
	if more {
		res.NextPageToken = encodePageToken(profiles[len(profiles)-1].GetId())
	}
	return connect.NewResponse(res), nil
}

func (s *profileService) UpdateProfile(ctx context.Context, req *connect.Request[examplev1.UpdateProfileRequest]) (*connect.Response[examplev1.UpdateProfileResponse], error) {
	p, err := s.store.Update(ctx, req.Msg.GetId(), func(p *examplev1.Profile) {
		if req.Msg.Name != nil {
			p.Name = req.Msg.GetName()
		}
		if req.Msg.Email != nil {
			p.Email = req.Msg.GetEmail()
		}
		p.UpdateTime = timestamppb.New(s.now())
	})
	if err != nil {
		return nil, storeError(err)
	}
	if err := s.changed(ctx, examplev1.ProfileChanged_KIND_UPDATED, p); err != nil {
		return nil, err
	}
	return connect.NewResponse(&examplev1.UpdateProfileResponse{Profile: p}), nil
}

func (s *profileService) DeleteProfile(ctx context.Context, req *connect.Request[examplev1.DeleteProfileRequest]) (*connect.Response[examplev1.DeleteProfileResponse], error) {
	p, err := s.store.Delete(ctx, req.Msg.GetId())
	if err != nil {
		return nil, storeError(err)
	}
	if err := s.changed(ctx, examplev1.ProfileChanged_KIND_DELETED, p); err != nil {
		return nil, err
	}
	return connect.NewResponse(&examplev1.DeleteProfileResponse{}), nil
}

func (s *profileService) WatchProfiles(ctx context.Context, _ *connect.Request[examplev1.WatchProfilesRequest], stream *connect.ServerStream[examplev1.WatchProfilesResponse]) error {
	w := s.hub.watch()
	defer s.hub.unwatch(w)
	// Send the headers now, so the caller knows the watch is established
	// before the first change.
	if err := stream.Send(nil); err != nil {
		return err
	}
	for {
		select {
		case change := <-w.changes:
			if err := stream.Send(&examplev1.WatchProfilesResponse{Change: change}); err != nil {
				return err
			}
		case <-w.dropped:
			return connect.NewError(connect.CodeResourceExhausted, errors.New("watcher fell too far behind; watch again"))
		case <-s.stopping:
			return nil // the server is shutting down: end the stream cleanly
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *profileService) ImportProfiles(ctx context.Context, stream *connect.ClientStream[examplev1.ImportProfilesRequest]) (*connect.Response[examplev1.ImportProfilesResponse], error) {
	var created int64
	for stream.Receive() {
		if _, err := s.create(ctx, stream.Msg().GetProfile()); err != nil {
			return nil, err
		}
		created++
	}
	if err := stream.Err(); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return connect.NewResponse(&examplev1.ImportProfilesResponse{Created: created}), nil
}

func (s *profileService) ListProfileChanges(_ context.Context, req *connect.Request[examplev1.ListProfileChangesRequest]) (*connect.Response[examplev1.ListProfileChangesResponse], error) {
	return connect.NewResponse(&examplev1.ListProfileChangesResponse{Changes: s.audit.changes(req.Msg.GetId())}), nil
}

// changed tells watchers and the broker about a change that was stored.
// Publishing waits for the broker to store the event: if that fails, the
// caller learns that the change is stored but its event was not confirmed
// (on a timeout or a lost connection the broker may still store it), or
// was not sent (pubsub.ErrNotSent: it will not be delivered). The
// code is Unknown, not Unavailable, which clients retry: a retried create
// would store the profile twice; it is Canceled when the caller left, and
// DeadlineExceeded when the call's deadline passed, meanwhile. (A service
// that must never miss an event writes it to an outbox table in the same
// transaction as the change, and publishes from there.)
func (s *profileService) changed(ctx context.Context, kind examplev1.ProfileChanged_Kind, p *examplev1.Profile) error {
	change := &examplev1.ProfileChanged{Kind: kind, Profile: p, ChangeTime: timestamppb.New(s.now())}
	s.hub.publish(change)
	if err := s.events.Publish(ctx, change); err != nil {
		code := connect.CodeUnknown
		switch {
		case errors.Is(err, context.Canceled) && errors.Is(context.Cause(ctx), context.Canceled):
			// The caller went away while the broker confirmed: its
			// call ends Canceled, a client's doing, not a server
			// error that alerts count. Not when the shutdown cut the
			// call (another cause): its client is still there, and
			// must get Unknown, which kit passes on as it is.
			code = connect.CodeCanceled
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
			// The call's deadline passed while the broker confirmed
			// (a broker outage, say): it ends DeadlineExceeded, as
			// its caller saw it, still a server error for alerts.
			code = connect.CodeDeadlineExceeded
		}
		what := "the broker did not confirm its change event (it may still be delivered)"
		if errors.Is(err, pubsub.ErrNotSent) {
			what = "its change event was not sent to the broker (it will not be delivered)"
		}
		return connect.NewError(code, fmt.Errorf("profile %s was saved, but %s: %w", p.GetId(), what, err))
	}
	return nil
}

// storeError maps a store error to the wire.
func storeError(err error) error {
	if errors.Is(err, errNotFound) {
		return connect.NewError(connect.CodeNotFound, err)
	}
	return connect.NewError(connect.CodeInternal, fmt.Errorf("store: %w", err))
}

func encodePageToken(lastID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(lastID))
}

func decodePageToken(token string) (string, error) {
	if token == "" {
		return "", nil
	}
	// A token is the last id of a page: anything else was not issued here.
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || uuid.Validate(string(b)) != nil {
		return "", connect.NewError(connect.CodeInvalidArgument, errors.New("page_token: not a token this server issued"))
	}
	return string(b), nil
}
