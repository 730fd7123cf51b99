package kit

import "time"

// timeCache appends a line's time as [appendJSONTime] does, from the text
// of the last second it formatted when the time falls in that second, in
// the same location: only the fraction is written anew. A log flusher
// formats lines whose times are mostly in the second of the line before;
// the date and the zone took ~600 instructions a line of the ~1 100 that a
// call's line costs kit's flusher (BENCHMARKS.md 36). Not safe for
// concurrent use: a lineWriter's, used under its fmu.
type timeCache struct {
	sec  int64          // the second cached, t.Unix()
	loc  *time.Location // t.Location() of the time cached
	head [20]byte       // `"2006-01-02T15:04:05`
	zone [8]byte        // `Z"` or `-07:00"`, the closing quote included
	n    int            // zone's length; 0 when nothing is cached
}

// appendTime is appendJSONTime(b, t).
func (c *timeCache) appendTime(b []byte, t time.Time) ([]byte, bool) {
	sec, loc := t.Unix(), t.Location()
	if c.n == 0 || sec != c.sec || loc != c.loc {
		start := len(b)
		b, ok := appendJSONTime(b, t)
		if ok {
			c.fill(b[start:], sec, loc)
		}
		return b, ok
	}
	b = append(b, c.head[:]...)
	f, n := fraction(t.Nanosecond())
	b = append(b, f[:n]...)
	return append(b, c.zone[:c.n]...), true
}

// fill caches the parts of s, the quoted time of the second sec in loc
// as appendJSONTime wrote it, or nothing if its zone does not fit.
func (c *timeCache) fill(s []byte, sec int64, loc *time.Location) {
	c.n = 0
	i := len(c.head)
	if len(s) <= i {
		return
	}
	if s[i] == '.' {
		for i++; i < len(s) && '0' <= s[i] && s[i] <= '9'; i++ {
		}
	}
	if len(s)-i > len(c.zone) {
		return // a zone of 1000 hours or more; up to 999 fit (`-999:59"`, 8 bytes)
	}
	c.sec, c.loc = sec, loc
	copy(c.head[:], s)
	c.n = copy(c.zone[:], s[i:])
}

// fraction returns the fraction of a second of ns nanoseconds as
// RFC3339Nano writes it, in its first n bytes: nothing for 0, else a dot
// and up to nine digits without trailing zeros.
func fraction(ns int) (f [10]byte, n int) {
	if ns == 0 {
		return f, 0
	}
	f[0] = '.'
	for i := 9; i > 0; i-- {
		f[i] = byte('0' + ns%10)
		ns /= 10
	}
	for n = 10; f[n-1] == '0'; n-- {
	}
	return f, n
}
