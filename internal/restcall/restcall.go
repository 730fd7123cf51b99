// Package restcall marks the Connect call that kit's REST routes make of
// a method (vanguard transcodes a REST call into one), so that the
// interceptors can tell it from a Connect client's call and label it
// "rest". connect shows interceptors the query of the request it serves
// (Peer.Query, which it parses for every Connect call anyway): vanguard
// leaves it empty (a POST) or puts a Connect GET's message there, and kit
// adds a parameter of its own. Reading it costs a Connect call that is
// not REST a length check, where a context value's lookup cost each call
// ~200 instructions (BENCHMARKS.md 32). The parameter's value is drawn at
// random when the process starts, so that a Connect client cannot have
// its own calls labelled REST by sending it.
package restcall

import (
	"crypto/rand"
	"net/url"
)

// Protocol is the protocol label and attribute of a REST call.
const Protocol = "rest"

// key is the mark's query parameter.
const key = "kit-rest-call"

var (
	value = rand.Text()
	param = key + "=" + value
)

// Mark adds the mark to u, the URL of the Connect call made of a method for
// a REST client.
func Mark(u *url.URL) {
	if u.RawQuery == "" {
		u.RawQuery = param
		return
	}
	u.RawQuery += "&" + param
}

// Marked says whether query, a Connect call's Peer.Query, has the mark.
func Marked(query url.Values) bool {
	v := query[key]
	return len(v) == 1 && v[0] == value
}
