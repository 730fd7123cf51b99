package natsjs

import (
	"testing"
	"time"
)

// TestReplayPositionResume: a replay's consumer made again resumes at its
// first delivery without a verdict, or after its last delivery, unless the
// stream was created again (its sequences are other messages') or holds
// fewer messages than that.
func TestReplayPositionResume(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		delivered []uint64
		settled   []uint64
		created   time.Time // of the stream at the resume
		lastSeq   uint64
		want      uint64
	}{
		{name: "nothing delivered", created: created, lastSeq: 9, want: 0},
		{name: "all settled", delivered: []uint64{1, 2, 3}, settled: []uint64{1, 2, 3}, created: created, lastSeq: 9, want: 4},
		{name: "one without a verdict", delivered: []uint64{1, 2, 3, 4}, settled: []uint64{1, 2, 4}, created: created, lastSeq: 9, want: 3},
		{name: "stream created again", delivered: []uint64{1, 2}, settled: []uint64{1, 2}, created: created.Add(time.Minute), lastSeq: 9, want: 0},
		{name: "stream shorter", delivered: []uint64{1, 2, 3}, settled: []uint64{1, 2, 3}, created: created, lastSeq: 1, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := &replayPosition{}
			p.resume(created, 0) // the first start notes the stream
			for _, seq := range tc.delivered {
				p.delivered(seq, true)
			}
			for _, seq := range tc.settled {
				p.settled(seq)
			}
			if got := p.resume(tc.created, tc.lastSeq); got != tc.want {
				t.Errorf("resume = %d, want %d", got, tc.want)
			}
			if len(p.outstanding) != 0 {
				t.Errorf("after resume, %d deliveries still outstanding, want none (their verdicts are dropped)", len(p.outstanding))
			}
		})
	}
}
