package kit

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"testing"

	"connectrpc.com/connect"
)

// gzipped returns the gzip stream of n bytes of "a", built from repeated
// gzip members of at most 1 MiB each (gzip readers read on across members),
// so that a large n costs little to build.
func gzipped(tb testing.TB, n int) []byte {
	tb.Helper()
	member := func(n int) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(bytes.Repeat([]byte("a"), n))
		if err := zw.Close(); err != nil {
			tb.Fatal(err)
		}
		return buf.Bytes()
	}
	mib := member(1 << 20)
	var out []byte
	for ; n >= 1<<20; n -= 1 << 20 {
		out = append(out, mib...)
	}
	return append(out, member(n)...)
}

// countingReader counts the compressed bytes a decompressor pulls.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// decompress reads src through d as connect-go v1.21.1's
// compressionPool.Decompress does: up to limit+1 bytes, then, if it got
// them all, on to EOF to report the size.
func decompress(d connect.Decompressor, src io.Reader, limit int64) (read, discarded int64, err error) {
	if err := d.Reset(src); err != nil {
		return 0, 0, err
	}
	var dst bytes.Buffer
	if read, err = dst.ReadFrom(io.LimitReader(d, limit+1)); err != nil || read <= limit {
		return read, 0, err
	}
	discarded, err = io.Copy(io.Discard, d)
	return read, discarded, err
}

func TestBoundedGzipStopsOneBytePastTheLimit(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	d := newBoundedGzipReader(limit)()

	bomb := gzipped(t, 256<<20) // 256 MiB from about 260 KiB
	src := &countingReader{r: bytes.NewReader(bomb)}
	read, discarded, err := decompress(d, src, limit)
	var ce *connect.Error
	if read != limit+1 || discarded != 0 || !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted {
		t.Errorf("bomb: read %d, then %d more, %v; want %d, 0 more and ResourceExhausted", read, discarded, err, limit+1)
	}
	// Inflating limit+1 bytes of "a" takes a few KiB of the bomb (plus
	// what gzip's bufio.Reader reads ahead), not all of it.
	if src.n > 16<<10 {
		t.Errorf("the decompressor pulled %d of the bomb's %d compressed bytes, want at most 16KiB", src.n, len(bomb))
	}
	_ = d.Close()

	// Pooled and reset, the same decompressor reads messages up to the limit.
	for _, n := range []int{0, 1, limit - 1, limit} {
		read, discarded, err := decompress(d, bytes.NewReader(gzipped(t, n)), limit)
		if read != int64(n) || discarded != 0 || err != nil {
			t.Errorf("%d bytes: read %d, then %d more, %v; want all, no error", n, read, discarded, err)
		}
		if err := d.Close(); err != nil {
			t.Errorf("%d bytes: Close: %v", n, err)
		}
	}
	// One byte over is over.
	if _, _, err := decompress(d, bytes.NewReader(gzipped(t, limit+1)), limit); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("limit+1 bytes: %v, want ResourceExhausted", err)
	}
}

// A handler given a larger limit than kit's gets the error while connect
// still reads up to its own limit, where it would call any other
// decompression error InvalidArgument: it is ResourceExhausted there too.
func TestBoundedGzipErrorIsResourceExhaustedUnderALargerReadMaxBytes(t *testing.T) {
	t.Parallel()
	const limit = 1 << 10
	_, _, err := decompress(newBoundedGzipReader(limit)(), bytes.NewReader(gzipped(t, 4*limit)), 8*limit)
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted {
		t.Errorf("got %v, want ResourceExhausted", err)
	}
}

// The bound costs no allocation: a pooled bounded reader allocates per
// message exactly what connect's default, a pooled *gzip.Reader, does. Not
// parallel: testing.AllocsPerRun refuses to run in a parallel test.
func TestBoundedGzipAllocatesAsConnectsDefault(t *testing.T) {
	msg := gzipped(t, 16<<10)
	allocs := func(d connect.Decompressor) float64 {
		var src bytes.Reader
		return testing.AllocsPerRun(100, func() {
			src.Reset(msg)
			if _, _, err := decompress(d, &src, 1<<20); err != nil {
				t.Fatal(err)
			}
			_ = d.Close()
		})
	}
	if bounded, plain := allocs(newBoundedGzipReader(1<<20)()), allocs(&gzip.Reader{}); bounded != plain {
		t.Errorf("bounded gzip allocates %v per message, connect's default %v", bounded, plain)
	}
}
