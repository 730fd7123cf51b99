package kit_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"

	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// FuzzTimeoutHeaders sends one Ping with fuzzed Grpc-Timeout and
// Connect-Timeout-Ms headers, in one of the protocols, to a running kit
// server (with the default limits, or with none), through everything that
// consumes the caller's timeout: the body and response timers, the write
// deadlines and the call's deadline. Whatever the headers say, the server
// must survive (a timer's panic ends the fuzzing process) and answer a
// well-formed RPC result: a success or an error with a valid code.
// "1n" once ended the process (6e08f38).
func FuzzTimeoutHeaders(f *testing.F) {
	for _, seed := range []struct {
		mode          uint8
		grpc, connect string
	}{
		{0, "1n", ""}, {1, "1n", ""}, {2, "", "1"}, {3, "", "1"}, {4, "", "1"},
		{0, "1S", ""}, {0, "0n", ""}, {0, "-1n", ""}, {0, "+1m", ""}, {0, "99999999H", ""},
		{0, "2562047H", ""}, {5, "2562047H", ""}, {7, "", "9999999999"}, {8, "", "9999999999"},
		{0, "1x", ""}, {0, "n", ""}, {2, "", "-1"}, {2, "", "0"}, {2, "", "1.5"},
		{9, "100u", ""}, {9, "", "99999999999"}, {0, "1n", "1"},
	} {
		f.Add(seed.mode, seed.grpc, seed.connect)
	}
	quiet := kit.WithLogger(slog.New(slog.DiscardHandler))
	servers := []*kittest.Server{
		newPingServer(f, kit.Config{}, nil, quiet),
		newPingServer(f, kit.Config{CallTimeout: kit.NoTimeout, MaxCallTimeout: kit.NoTimeout}, nil, quiet),
	}
	f.Fuzz(func(t *testing.T, mode uint8, grpcTimeout, connectTimeout string) {
		if !validHeaderValue(grpcTimeout) || !validHeaderValue(connectTimeout) {
			return // no client sends it
		}
		srv := servers[int(mode/5)%len(servers)]
		url := srv.URL + pingPath
		method, body := http.MethodPost, []byte{0, 0, 0, 0, 0} // one empty gRPC frame
		client := srv.HTTP2Client()
		header := http.Header{}
		switch mode % 5 {
		case 0: // gRPC
			header.Set("Content-Type", "application/grpc")
			header.Set("Te", "trailers")
		case 1: // gRPC-Web over HTTP/1.1
			header.Set("Content-Type", "application/grpc-web+proto")
			client = srv.HTTP1Client()
		case 2: // Connect over h2c
			header.Set("Content-Type", "application/proto")
			body = nil
		case 3: // Connect over HTTP/1.1
			header.Set("Content-Type", "application/json")
			body = []byte(`{"number":"1"}`)
			client = srv.HTTP1Client()
		case 4: // Connect GET
			method, body = http.MethodGet, nil
			url += "?connect=v1&encoding=json&message=%7B%7D"
		}
		header.Set("Connect-Protocol-Version", "1")
		if grpcTimeout != "" {
			header.Set("Grpc-Timeout", grpcTimeout)
		}
		if connectTimeout != "" {
			header.Set("Connect-Timeout-Ms", connectTimeout)
		}
		req, err := http.NewRequest(method, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = header
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("mode %d, Grpc-Timeout %q, Connect-Timeout-Ms %q: %v", mode, grpcTimeout, connectTimeout, err)
		}
		defer res.Body.Close()
		got, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("mode %d: reading the response: %v", mode, err)
		}
		switch mode % 5 {
		case 0:
			status := res.Trailer.Get("Grpc-Status")
			if status == "" {
				status = res.Header.Get("Grpc-Status")
			}
			if n, err := strconv.Atoi(status); res.StatusCode != http.StatusOK || err != nil || n < 0 || n > 16 {
				t.Fatalf("gRPC: HTTP %d, Grpc-Status %q", res.StatusCode, status)
			}
		case 1:
			if res.StatusCode != http.StatusOK || !bytes.Contains(got, []byte("grpc-status:")) && res.Header.Get("Grpc-Status") == "" {
				t.Fatalf("gRPC-Web: HTTP %d, %q", res.StatusCode, got)
			}
		default:
			if res.StatusCode == http.StatusOK {
				return
			}
			var e struct{ Code string }
			if err := json.Unmarshal(got, &e); err != nil || e.Code == "" {
				t.Fatalf("Connect: HTTP %d, %q", res.StatusCode, got)
			}
		}
	})
}

// validHeaderValue says whether net/http's client sends v as a header's
// value: no control byte but tab.
func validHeaderValue(v string) bool {
	return !bytes.ContainsFunc([]byte(v), func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f })
}
