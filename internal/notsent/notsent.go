// Package notsent holds the one error value that says a request or a
// message certainly never left the process, so that
// [github.com/connectkit/connectkit/interceptors.ErrNotSent] (an RPC) and
// [github.com/connectkit/connectkit/pubsub.ErrNotSent] (a publish) are the
// same value, as the standard library's os.ErrNotExist and fs.ErrNotExist
// are one (internal/oserror): errors.Is(err, either) holds for both kinds
// of call, and neither package imports the other.
package notsent

import "errors"

// Err is the value of both exported ErrNotSent. Its text names neither an
// RPC nor a publish: the errors that wrap it say which.
var Err = errors.New("not sent")
