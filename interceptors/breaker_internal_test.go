package interceptors

import (
	"fmt"
	"runtime"
	"testing"
)

// TestBreakerKeysCostNoCopy checks that a new peer and procedure costs its
// breaker alone, however many the interceptor already holds: a copy of
// every breaker for each new one made the calls to 30 000 peers (a client
// per tenant's URL) take minutes. Bytes are counted, not time. Not
// parallel: it reads the whole process's allocations.
func TestBreakerKeysCostNoCopy(t *testing.T) {
	ic, err := CircuitBreaker(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := ic.(*breakers)
	const held, added = 5000, 100
	for i := range held {
		b.get(fmt.Sprintf("tenant-%d.example.com:443", i), "/acme.v1.Hooks/Deliver")
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range added {
		b.get(fmt.Sprintf("new-%d.example.com:443", i), "/acme.v1.Hooks/Deliver")
	}
	runtime.ReadMemStats(&after)
	// A breaker is ~2KiB; a copy of 5 000 map entries is over 200KiB.
	if per := (after.TotalAlloc - before.TotalAlloc) / added; per > 32<<10 {
		t.Errorf("a new key beside %d allocated %d bytes, want under 32KiB: the breakers are copied", held, per)
	}
}
