package natsjs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// replayPosition is where a replay's consumer resumes when it is made
// again (deleted, or lost with the server's state, or inactive for
// Config.ReplayInactiveThreshold while the connection was down): at the
// lowest stream sequence delivered without a verdict, or after the
// highest delivered, so that the instance's handlers do not see the topic
// again from its start.
type replayPosition struct {
	mu          sync.Mutex
	stream      time.Time           // when the stream was created, at the last start
	next        uint64              // after the highest sequence delivered; 0 before the first
	outstanding map[uint64]struct{} // delivered, without an ack or a term yet
}

// delivered notes a delivery of seq, and whether it awaits a verdict.
func (p *replayPosition) delivered(seq uint64, awaits bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next = max(p.next, seq+1)
	if awaits {
		if p.outstanding == nil {
			p.outstanding = make(map[uint64]struct{})
		}
		p.outstanding[seq] = struct{}{}
	}
}

// settled notes that seq was acknowledged or terminated.
func (p *replayPosition) settled(seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.outstanding, seq)
}

// resume returns the sequence a consumer made again begins with, 0 for the
// start of the topic (nothing delivered yet, or the stream was created
// again since: its sequences are other messages'), and forgets the
// deliveries so far, whose verdicts the new consumer drops. anew reports
// whether the replay begins again with this stream (at its first start, or
// the stream was created again or holds fewer messages), so that its
// backlog is the stream's as it is now.
func (p *replayPosition) resume(streamCreated time.Time, lastSeq uint64) (from uint64, anew bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	from = p.next
	for seq := range p.outstanding {
		from = min(from, seq)
	}
	clear(p.outstanding)
	if !p.stream.Equal(streamCreated) || from > lastSeq+1 {
		from, anew = 0, true
	}
	p.stream = streamCreated
	p.next = from
	return from, anew
}

// replayConfig makes conf the configuration of a replay's own consumer (see
// Subscribe), and notes the stream's last sequence at the replay's start:
// the backlog that CaughtUp waits for. A consumer made again resumes where
// the one before it was (see replayPosition), and waits for the same
// backlog, not for the messages published since (unless the replay begins
// again, on a stream created again).
func (c *consumer) replayConfig(ctx context.Context, stream string, conf *jetstream.ConsumerConfig) error {
	s, err := c.b.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("natsjs: failed to look up stream %s: %w", stream, err)
	}
	info := s.CachedInfo()
	conf.Durable = ""
	conf.Name = c.name
	conf.Description = "pubsub replaying subscription " + c.cfg.Subscription + " of " + c.cfg.Topic + ", one instance's"
	conf.InactiveThreshold = c.b.cfg.ReplayInactiveThreshold
	conf.MemoryStorage = true
	conf.Replicas = 1
	from, anew := c.pos.resume(info.Created, info.State.LastSeq)
	if anew {
		c.upTo.Store(info.State.LastSeq)
	}
	if from > 0 {
		conf.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		conf.OptStartSeq = from
	} else if !c.cfg.ReplaySince.IsZero() {
		since := c.cfg.ReplaySince
		conf.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		conf.OptStartTime = &since
	}
	return nil
}

// CaughtUp implements [pubsub.Replayer]: whether the consumer's
// acknowledgement floor reached the stream's last sequence at the
// replay's start (not at the making of a consumer made again; see
// replayConfig), or it has nothing pending or unacknowledged. A durable
// subscription's consumer is always caught up.
func (c *consumer) CaughtUp(ctx context.Context) (bool, error) {
	if !c.cfg.Replay {
		return true, nil
	}
	c.mu.Lock()
	cons := c.cons
	c.mu.Unlock()
	if cons == nil {
		return false, errors.New("natsjs: not consuming")
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return false, err
	}
	return info.AckFloor.Stream >= c.upTo.Load() || (info.NumPending == 0 && info.NumAckPending == 0), nil
}
