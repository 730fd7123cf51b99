// Command connect is the smallest ping server on bare connect-go (HTTP/1.1
// and h2c on net/http), for the binary sizes of BENCHMARKS.md section 12.
package main

import (
	"net/http"
	"os"

	"github.com/connectkit/connectkit/internal/bench/footprint/hello/ping"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

func main() {
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(ping.Service{}))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Addr: "127.0.0.1:0", Handler: mux, Protocols: &protocols}
	if err := srv.ListenAndServe(); err != nil {
		os.Exit(1)
	}
}
