package batchconn_test

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"

	"github.com/connectkit/connectkit/internal/batchconn"
)

// A net/http server speaking HTTP/1.1 and h2c on one port: the h2c
// connections it accepts are batched, the HTTP/1.1 ones pass through.
func ExampleNewListener() {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ln, err := batchconn.NewListener(inner, batchconn.Config{}) // ModeH2C, documented defaults
	if err != nil {
		log.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Protocols: &protocols,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello over %s", r.Proto)
		}),
	}
	go srv.Serve(ln)
	defer srv.Close()

	for _, h2c := range []bool{true, false} {
		var client http.Protocols
		client.SetUnencryptedHTTP2(h2c)
		client.SetHTTP1(!h2c)
		tr := &http.Transport{Protocols: &client}
		res, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String())
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		tr.CloseIdleConnections()
		fmt.Println(string(body))
	}
	// Output:
	// hello over HTTP/2.0
	// hello over HTTP/1.1
}
