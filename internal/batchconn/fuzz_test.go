package batchconn

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// FuzzWriteSequence checks that whatever the sizes of the writes and the
// buffer bound, the peer receives exactly the bytes written, in order, and
// Close delivers the tail.
func FuzzWriteSequence(f *testing.F) {
	f.Add([]byte("hello"), uint16(1), uint16(3))
	f.Add(bytes.Repeat([]byte("abc"), 5000), uint16(7), uint16(100))
	f.Add(bytes.Repeat([]byte{0}, 70000), uint16(65535), uint16(1))
	f.Add([]byte{}, uint16(0), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, chunk, bound uint16) {
		if len(data) > 16<<10 && bound < 1024 {
			t.Skip("too many flushes for one input") // each costs a syscall
		}
		server, client := batchedPair(t, Config{MaxBufferedBytes: int(bound) + 1})
		step := int(chunk) + 1
		done := make(chan error, 1)
		go func() {
			for p := data; len(p) > 0; {
				k := min(step, len(p))
				n, err := server.Write(p[:k])
				if err != nil || n != k {
					done <- err
					return
				}
				p = p[k:]
				step = step*7%4093 + 1 // vary the sizes
			}
			done <- server.Close()
		}()
		client.SetReadDeadline(time.Now().Add(waitFor))
		got, err := io.ReadAll(client)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("Write or Close: %v", err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("peer read %d bytes, want %d (or other bytes)", len(got), len(data))
		}
	})
}
