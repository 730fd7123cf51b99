package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
)

const pingPath = "/connectkit.ping.v1.PingService/Ping"

// pingNumber is the number every benchmark call sends and expects back.
const pingNumber = 42

// requestFiles are the load generators' inputs.
type requestFiles struct {
	grpcFrame string // a gRPC length-prefixed PingRequest, for h2load -d
	wrkScript string // a wrk Lua script POSTing Connect JSON
}

func writeRequestFiles(dir string) (requestFiles, error) {
	f := requestFiles{grpcFrame: filepath.Join(dir, "ping.grpc"), wrkScript: filepath.Join(dir, "ping.lua")}
	msg, err := proto.Marshal(&pingv1.PingRequest{Number: pingNumber})
	if err != nil {
		return f, err
	}
	frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	if err := os.WriteFile(f.grpcFrame, append(frame, msg...), 0o644); err != nil {
		return f, err
	}
	lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = '{\"number\":%d}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n", pingNumber)
	return f, os.WriteFile(f.wrkScript, []byte(lua), 0o644)
}

// checkServer makes the call the load generator will make, with Go's own
// client, and checks the answer, so that a benchmark never measures errors.
func checkServer(ctx context.Context, addr, scenario string, useTLS bool) error {
	scheme := "http://"
	if useTLS {
		scheme = "https://"
	}
	var protocols http.Protocols
	var req *http.Request
	var err error
	switch scenario {
	case "grpc-h2c":
		protocols.SetUnencryptedHTTP2(!useTLS)
		protocols.SetHTTP2(useTLS)
		msg, _ := proto.Marshal(&pingv1.PingRequest{Number: pingNumber})
		body := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg))), msg...)
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, scheme+addr+pingPath, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
	case "json-http1":
		protocols.SetHTTP1(true)
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, scheme+addr+pingPath, strings.NewReader(fmt.Sprintf(`{"number":%d}`, pingNumber)))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
	default:
		return fmt.Errorf("unknown scenario %q (want grpc-h2c or json-http1)", scenario)
	}
	tr := &http.Transport{Protocols: &protocols, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // benchserver's self-signed certificate
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP status %d: %s", res.StatusCode, body)
	}
	if scenario == "json-http1" {
		if want := fmt.Sprintf(`"number":"%d"`, pingNumber); !bytes.Contains(body, []byte(want)) {
			return fmt.Errorf("response %s lacks %s", body, want)
		}
		return nil
	}
	if want := 2 - b2i(scenario == "json-http1"); res.ProtoMajor != want {
		return fmt.Errorf("served over %s, want HTTP/%d", res.Proto, want)
	}
	if s := res.Trailer.Get("Grpc-Status"); s != "0" {
		return fmt.Errorf("grpc-status %q: %s", s, res.Trailer.Get("Grpc-Message"))
	}
	var out pingv1.PingResponse
	if len(body) < 5 || proto.Unmarshal(body[5:], &out) != nil || out.GetNumber() != pingNumber {
		return fmt.Errorf("response frame %x is not PingResponse{number: %d}", body, pingNumber)
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// loader runs the load generators against one server.
type loader struct {
	tls     bool
	work    string
	files   requestFiles
	addr    string
	pinned  bool
	calls50 int
	calls1  int
	wrkTime time.Duration
}

// loadResult is what one load run reports.
type loadResult struct {
	calls, failed int64
	elapsed       time.Duration
	p50, p99      time.Duration
}

// run runs scenario sc with 1/divisor of the configured calls or duration.
func (l loader) run(ctx context.Context, sc scenario, divisor int) (loadResult, error) {
	url := "http://" + l.addr + pingPath
	if l.tls {
		url = "https://" + l.addr + pingPath
	}
	var args []string
	if l.pinned {
		args = []string{"taskset", "-c", "1"}
	}
	if sc.Name == "json-http1" {
		d := max(l.wrkTime/time.Duration(divisor), time.Second)
		args = append(args, "wrk", "-t1", "-c"+strconv.Itoa(sc.InFlight), "-d"+strconv.Itoa(int(d.Seconds()))+"s",
			"--latency", "-s", l.files.wrkScript, url)
		out, err := command(ctx, args)
		if err != nil {
			return loadResult{}, err
		}
		return parseWrk(out)
	}
	n := l.calls50
	if sc.InFlight == 1 {
		n = l.calls1
	}
	conns := min(10, sc.InFlight)
	logFile := filepath.Join(l.work, "h2load.log")
	if err := os.Remove(logFile); err != nil && !os.IsNotExist(err) { // h2load appends
		return loadResult{}, err
	}
	args = append(args, "h2load", "-t1", "-n"+strconv.Itoa(max(n/divisor, 100)),
		"-c"+strconv.Itoa(conns), "-m"+strconv.Itoa(sc.InFlight/conns),
		"-d", l.files.grpcFrame, "-H", "content-type: application/grpc", "-H", "te: trailers",
		"--log-file="+logFile, url)
	out, err := command(ctx, args)
	if err != nil {
		return loadResult{}, err
	}
	r, err := parseH2load(out)
	if err != nil {
		return r, err
	}
	r.p50, r.p99, err = logPercentiles(logFile)
	return r, err
}

func command(ctx context.Context, args []string) (string, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// parseH2load reads "finished in 5.06s, ..." and "requests: ... N
// succeeded, N failed, N errored, N timeout".
func parseH2load(out string) (loadResult, error) {
	var r loadResult
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "finished in "); ok {
			d, err := time.ParseDuration(strings.TrimSuffix(strings.Fields(rest)[0], ","))
			if err != nil {
				return r, fmt.Errorf("h2load: %q: %w", line, err)
			}
			r.elapsed = d
		}
		if rest, ok := strings.CutPrefix(line, "requests: "); ok {
			for _, part := range strings.Split(rest, ", ") {
				var n int64
				var what string
				fmt.Sscan(part, &n, &what)
				switch what {
				case "succeeded":
					r.calls = n
				case "failed", "errored", "timeout":
					r.failed += n
				}
			}
		}
	}
	if r.elapsed == 0 || r.calls+r.failed == 0 {
		return r, fmt.Errorf("h2load output not understood:\n%s", out)
	}
	return r, nil
}

// logPercentiles reads h2load's per-request log (third column: µs until
// the end of the response).
func logPercentiles(path string) (p50, p99 time.Duration, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var lat []int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 3 {
			continue
		}
		us, err := strconv.ParseInt(cols[2], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("h2load log line %q: %w", sc.Text(), err)
		}
		lat = append(lat, us)
	}
	if err := sc.Err(); err != nil || len(lat) == 0 {
		return 0, 0, fmt.Errorf("h2load log %s: %d entries, %v", path, len(lat), err)
	}
	slices.Sort(lat)
	at := func(q float64) time.Duration {
		return time.Duration(lat[int(q*float64(len(lat)-1))]) * time.Microsecond
	}
	return at(0.50), at(0.99), nil
}

// parseWrk reads wrk --latency output.
func parseWrk(out string) (loadResult, error) {
	var r loadResult
	var non2xx int64
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			d, err := time.ParseDuration(f[1])
			if err != nil {
				return r, fmt.Errorf("wrk: %q: %w", line, err)
			}
			if f[0] == "50%" {
				r.p50 = d
			} else {
				r.p99 = d
			}
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			n, err1 := strconv.ParseInt(f[0], 10, 64)
			d, err2 := time.ParseDuration(strings.TrimSuffix(f[3], ","))
			if err1 != nil || err2 != nil {
				return r, fmt.Errorf("wrk: %q not understood", line)
			}
			r.calls, r.elapsed = n, d
		case strings.HasPrefix(strings.TrimSpace(line), "Non-2xx or 3xx responses:"):
			non2xx, _ = strconv.ParseInt(f[len(f)-1], 10, 64)
			r.failed += non2xx
		case strings.HasPrefix(strings.TrimSpace(line), "Socket errors:"):
			// "Socket errors: connect 0, read 0, write 0, timeout 0"
			for _, part := range strings.Split(strings.TrimPrefix(strings.TrimSpace(line), "Socket errors: "), ", ") {
				var what string
				var n int64
				fmt.Sscan(part, &what, &n)
				r.failed += n
			}
		}
	}
	if r.elapsed == 0 || r.p50 == 0 {
		return r, fmt.Errorf("wrk output not understood:\n%s", out)
	}
	r.calls -= non2xx // wrk counts them in its total
	return r, nil
}
