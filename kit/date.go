package kit

import (
	"net/http"
	"sync/atomic"
	"time"
)

// dateHeader is the Date header of the responses to unary calls served in
// the current second, which [serviceHandler] sets so that net/http need not
// write its own: net/http formats the Date of every response with the
// general time.Time.AppendFormat, ~1 900 instructions (the largest single
// step of a Connect JSON call after the collector's), and over HTTP/2 as a
// new string too. So a response's Date is the second its call came in,
// not the one its headers went out in: for a unary call, they differ by
// the time its handler took, which RFC 9110's "best available
// approximation" allows. Streams, whose headers may go out much later,
// keep net/http's. connect drops a Date that handlers set on their
// responses, as before.
type dateHeader struct {
	cur atomic.Pointer[dateValue]
}

type dateValue struct {
	unix  int64
	value []string // length and capacity 1: an Add to the header copies it
}

// at returns the Date header's value for a response written at now. Every
// response of a second shares the slice, which net/http only reads.
func (d *dateHeader) at(now time.Time) []string {
	sec := now.Unix()
	if v := d.cur.Load(); v != nil && v.unix == sec {
		return v.value
	}
	v := &dateValue{unix: sec, value: []string{now.UTC().Format(http.TimeFormat)}}
	d.cur.Store(v)
	return v.value
}
