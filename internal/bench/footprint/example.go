//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
	"github.com/connectkit/connectkit/gen/example/v1/examplev1connect"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
)

func runExample(path, dataDir string, calls, subs int, idle, settle time.Duration, profile string) (run, error) {
	var r run
	addr, admin := freeAddr(), freeAddr()
	env := []string{
		"KIT_ADDR=" + addr, "KIT_ADMIN_ADDR=" + admin, "KIT_PPROF=true", "KIT_LOG_FORMAT=json",
		"NATS_DATA_DIR=" + filepath.Join(dataDir, "nats"),
	}
	if profile != "" {
		env = append(env, "GODEBUG=memprofilerate=4096") // as benchserver's -heapprofile
	}
	natsAddr := ""
	if subs > 0 {
		natsAddr = freeAddr()
		env = append(env, "NATS_LISTEN="+natsAddr)
	}
	p, err := startProcess(path, env)
	if err != nil {
		return r, err
	}
	defer p.stop()
	readyz := make(chan time.Duration, 1)
	go func() {
		for {
			resp, err := http.Get("http://" + admin + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					readyz <- time.Since(p.start)
					return
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	if _, r.Ready, err = p.waitLine(`"msg":"serving"`, 60*time.Second); err != nil {
		return r, err
	}
	go func() {
		for range p.lines {
		}
	}()
	select {
	case r.ReadyZ = <-readyz:
	case <-time.After(60 * time.Second):
		return r, errors.New("/readyz not 200 within 60s")
	}
	time.Sleep(idle)
	if r.Idle, r.Goroutine, err = exampleSample(p, admin, profile); err != nil {
		return r, err
	}
	ctx := context.Background()
	grpcClient := examplev1connect.NewProfileServiceClient(h2cClient(), "http://"+addr, connect.WithGRPC())
	ids := make([]string, calls+1)
	start := time.Now()
	if _, err := grpcClient.GetProfile(ctx, connect.NewRequest(&examplev1.GetProfileRequest{Id: "00000000-0000-4000-8000-000000000000"})); connect.CodeOf(err) != connect.CodeNotFound {
		return r, fmt.Errorf("first call: %w", err)
	}
	r.FirstCall = time.Since(start)
	if err := callN(calls, func(i int) error {
		resp, err := grpcClient.CreateProfile(ctx, connect.NewRequest(&examplev1.CreateProfileRequest{
			Name: fmt.Sprintf("user %d", i), Email: fmt.Sprintf("user%d@example.com", i),
		}))
		if err == nil {
			ids[i] = resp.Msg.GetProfile().GetId()
		}
		return err
	}); err != nil {
		return r, err
	}
	jsonClient := examplev1connect.NewProfileServiceClient(http1Client(), "http://"+addr, connect.WithProtoJSON())
	if err := callN(calls, func(i int) error {
		_, err := jsonClient.GetProfile(ctx, connect.NewRequest(&examplev1.GetProfileRequest{Id: ids[i]}))
		return err
	}); err != nil {
		return r, err
	}
	time.Sleep(idle)
	if r.Calls, _, err = exampleSample(p, admin, profile); err != nil {
		return r, err
	}
	if subs > 0 {
		stopSubs, err := subscribe(natsAddr, subs)
		if err != nil {
			return r, err
		}
		defer stopSubs()
		time.Sleep(idle)
		if r.Subs, _, err = exampleSample(p, admin, profile); err != nil {
			return r, err
		}
	}
	if settle > 0 {
		time.Sleep(settle)
		r.Settled, _, err = exampleSample(p, admin, profile)
	}
	return r, err
}

// subscribe runs n subscriptions of a topic each against the example's
// embedded server, through natsjs as another service would, publishes 10
// messages to each and waits until they are handled: the example's server
// then holds n streams and n durable consumers more.
func subscribe(natsAddr string, n int) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	bus, err := natsjs.New(ctx, natsjs.Config{URL: "nats://" + natsAddr, Name: "footprint"})
	if err != nil {
		cancel()
		return nil, err
	}
	stop = func() { cancel(); bus.Close() }
	var handled sync.WaitGroup
	for i := range n {
		topic := fmt.Sprintf("footprint.topic%d", i)
		handled.Add(10)
		sub, err := pubsub.NewSubscriber(bus, topic, "footprint", func(context.Context, *pingv1.PingRequest) error {
			handled.Done()
			return nil
		})
		if err != nil {
			stop()
			return nil, err
		}
		go func() { _ = sub.Run(ctx) }()
		pub, err := pubsub.NewPublisher[pingv1.PingRequest](bus, topic)
		if err != nil {
			stop()
			return nil, err
		}
		for j := range 10 {
			if err := pub.Publish(ctx, &pingv1.PingRequest{Number: int64(j)}); err != nil {
				stop()
				return nil, err
			}
		}
	}
	done := make(chan struct{})
	go func() { handled.Wait(); close(done) }()
	select {
	case <-done:
		return stop, nil
	case <-time.After(60 * time.Second):
		stop()
		return nil, errors.New("subscriptions did not handle their messages within 60s")
	}
}

var (
	heapLine      = regexp.MustCompile(`(?m)^# (HeapInuse|HeapAlloc|Sys|Stack) = (\d+)`)
	goroutineLine = regexp.MustCompile(`^goroutine profile: total (\d+)`)
)

// exampleSample reads the example's heap after a collection
// (/debug/pprof/heap?gc=1&debug=1) and goroutines through its admin port.
// The goroutine that serves the profile's request is left out.
func exampleSample(p *process, admin, profile string) (sample, string, error) {
	var s sample
	if profile != "" {
		pb, err := get("http://" + admin + "/debug/pprof/heap?gc=1")
		if err != nil {
			return s, "", err
		}
		p.profiles++
		if err := os.WriteFile(fmt.Sprintf("%s-%d.pb.gz", profile, p.profiles), []byte(pb), 0o644); err != nil {
			return s, "", err
		}
	}
	heap, err := get("http://" + admin + "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return s, "", err
	}
	for _, m := range heapLine.FindAllStringSubmatch(heap, -1) {
		v, _ := strconv.ParseUint(m[2], 10, 64)
		switch m[1] {
		case "HeapInuse":
			s.HeapInuse = v
		case "HeapAlloc":
			s.HeapAlloc = v
		case "Sys":
			s.Sys = v
		case "Stack":
			s.StackInuse = v
		}
	}
	prof, err := get("http://" + admin + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return s, "", err
	}
	m := goroutineLine.FindStringSubmatch(prof)
	if m == nil {
		return s, "", errors.New("no goroutine count")
	}
	g, _ := strconv.Atoi(m[1])
	s.Goroutines = g - 1
	return s, prof, readRSS(p.cmd.Process.Pid, &s)
}

func get(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), err
}
