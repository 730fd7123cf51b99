package kit

import (
	"compress/gzip"
	"fmt"
	"io"

	"connectrpc.com/connect"
)

// withBoundedGzip registers gzip on a handler in place of connect's
// default, for requests of at most limit bytes: the standard library's
// [compress/gzip] at the default level, as connect's, except that a
// decompressor inflates at most limit+1 bytes of a message (see
// [boundedGzipReader]).
func withBoundedGzip(limit int64) connect.HandlerOption {
	return connect.WithCompression(gzipName, newBoundedGzipReader(limit), newGzipWriter)
}

// acceptBoundedGzip is [withBoundedGzip] for a client, whose responses are
// at most limit bytes.
func acceptBoundedGzip(limit int64) connect.ClientOption {
	return connect.WithAcceptCompression(gzipName, newBoundedGzipReader(limit), newGzipWriter)
}

// gzipName is the name gzip goes by in Content-Encoding, Grpc-Encoding and
// Connect-Content-Encoding.
const gzipName = "gzip"

func newBoundedGzipReader(limit int64) func() connect.Decompressor {
	return func() connect.Decompressor { return &boundedGzipReader{limit: limit} }
}

func newGzipWriter() connect.Compressor { return gzip.NewWriter(io.Discard) }

// boundedGzipReader is a [gzip.Reader] that stops inflating one byte past
// its limit: a gzip bomb costs the CPU of limit+1 bytes, not of all it
// would inflate to.
//
// connect reads a compressed message through an [io.LimitReader] of
// ReadMaxBytes+1 bytes and, if it got them all, reads the decompressor on
// to EOF only to report the full size: the read that would inflate past
// limit+1 bytes fails instead, and connect answers ResourceExhausted. The
// decompressors are pooled by connect (Reset per message, Close after), so
// the bound costs no allocation per call.
type boundedGzipReader struct {
	gzip.Reader
	limit int64 // the most a message may inflate to: ReadMaxBytes
	left  int64 // bytes still allowed in this message: limit+1 at Reset
}

// Reset starts a new message from r.
func (z *boundedGzipReader) Reset(r io.Reader) error {
	z.left = z.limit + 1
	return z.Reader.Reset(r)
}

// Read inflates into p, failing once the message has inflated to more than
// its limit.
func (z *boundedGzipReader) Read(p []byte) (int, error) {
	if z.left <= 0 {
		return 0, &inflateLimitError{limit: z.limit}
	}
	if int64(len(p)) > z.left {
		p = p[:z.left]
	}
	n, err := z.Reader.Read(p)
	z.left -= int64(n)
	return n, err
}

// inflateLimitError reports a message that inflates past the limit. Its
// text ends connect's "message is larger than configured max N - unable to
// determine message size: " and its code is ResourceExhausted, also where
// connect would otherwise call a decompression error InvalidArgument (a
// handler built with a larger [connect.WithReadMaxBytes] than the
// configured maximum).
type inflateLimitError struct{ limit int64 }

func (e *inflateLimitError) Error() string {
	return fmt.Sprintf("gzip: stopped decompressing past the %d-byte limit", e.limit)
}

// As lets [errors.As] see e as a [connect.Error] with code ResourceExhausted.
func (e *inflateLimitError) As(target any) bool {
	if t, ok := target.(**connect.Error); ok {
		*t = connect.NewError(connect.CodeResourceExhausted, e)
		return true
	}
	return false
}
