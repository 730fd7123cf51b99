package interceptors_test

import (
	"testing"

	"github.com/connectkit/connectkit/interceptors"
)

// BenchmarkRetry measures what Retry adds to a client's unary call that
// succeeds at once (see benchClientInterceptor).
func BenchmarkRetry(b *testing.B) {
	retry, err := interceptors.Retry(nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	benchClientInterceptor(b, "retry", retry)
}
