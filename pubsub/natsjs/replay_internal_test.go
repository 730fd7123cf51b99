package natsjs

import (
	"testing"
	"time"
)

// TestReplayPositionResume: a replay's consumer made again resumes at its
// first delivery without a verdict, or after its last delivery, unless the
// stream was created again (its sequences are other messages') or holds
// fewer messages than that; only then does the replay begin again (anew),
// with the backlog of the stream as it is then.
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
		anew      bool
	}{
		{name: "nothing delivered", created: created, lastSeq: 9, want: 0},
		{name: "all settled", delivered: []uint64{1, 2, 3}, settled: []uint64{1, 2, 3}, created: created, lastSeq: 9, want: 4},
		{name: "one without a verdict", delivered: []uint64{1, 2, 3, 4}, settled: []uint64{1, 2, 4}, created: created, lastSeq: 9, want: 3},
		{name: "stream created again", delivered: []uint64{1, 2}, settled: []uint64{1, 2}, created: created.Add(time.Minute), lastSeq: 9, want: 0, anew: true},
		{name: "stream shorter", delivered: []uint64{1, 2, 3}, settled: []uint64{1, 2, 3}, created: created, lastSeq: 1, want: 0, anew: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := &replayPosition{}
			if _, anew := p.resume(created, 0); !anew { // the first start notes the stream
				t.Errorf("the first resume's anew = false, want true")
			}
			for _, seq := range tc.delivered {
				p.delivered(seq, true)
			}
			for _, seq := range tc.settled {
				p.settled(seq)
			}
			if got, anew := p.resume(tc.created, tc.lastSeq); got != tc.want || anew != tc.anew {
				t.Errorf("resume = %d, %t, want %d, %t", got, anew, tc.want, tc.anew)
			}
			if len(p.outstanding) != 0 {
				t.Errorf("after resume, %d deliveries still outstanding, want none (their verdicts are dropped)", len(p.outstanding))
			}
		})
	}
}
