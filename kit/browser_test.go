package kit_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/connectkit/connectkit/kit"
)

// browserPage calls the ping service at the URL in its query string from
// another origin, with Connect JSON and gRPC-Web, as a web app would, and
// writes what it saw as JSON into <pre id="result">.
const browserPage = `<!doctype html>
<html><body><pre id="result">pending</pre><script>
const api = new URLSearchParams(location.search).get("api");
const out = {};
function frame(bytes) { // gRPC-Web data frame
  const f = new Uint8Array(5 + bytes.length);
  new DataView(f.buffer).setUint32(1, bytes.length);
  f.set(bytes, 5);
  return f;
}
async function run() {
  try {
    let r = await fetch(api + "/connectkit.ping.v1.PingService/Ping", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: '{"number": 7}'});
    out.connect = {status: r.status, body: await r.json(), requestId: r.headers.get("X-Request-Id")};

    r = await fetch(api + "/connectkit.ping.v1.PingService/Fail", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: '{"code": 5}'});
    out.connectError = {status: r.status, body: await r.json()};

    r = await fetch(api + "/connectkit.ping.v1.PingService/Ping", {
      method: "POST", headers: {"Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1"},
      body: frame(new Uint8Array([0x08, 0x07]))}); // PingRequest{number: 7}
    const bytes = new Uint8Array(await r.arrayBuffer());
    const trailer = new TextDecoder().decode(bytes.slice(5 + new DataView(bytes.buffer).getUint32(1) + 5));
    out.grpcWeb = {status: r.status, message: Array.from(bytes.slice(5, 7)), trailer: trailer};

    r = await fetch(api + "/connectkit.ping.v1.PingService/Fail", {
      method: "POST", headers: {"Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1"},
      body: frame(new Uint8Array([0x08, 0x05]))}); // FailRequest{code: 5}
    await r.arrayBuffer();
    out.grpcWebError = {grpcStatus: r.headers.get("Grpc-Status"), grpcMessage: r.headers.get("Grpc-Message")};

    // A header of the page's own, with its cookies, reading a header the
    // handler set (KIT_CORS_ALLOWED_HEADERS, KIT_CORS_ALLOW_CREDENTIALS,
    // KIT_CORS_EXPOSED_HEADERS).
    r = await fetch(api + "/connectkit.ping.v1.PingService/Ping", {
      method: "POST", credentials: "include",
      headers: {"Content-Type": "application/json", "X-Api-Key": "k"}, body: '{"number": 8}'});
    out.ownHeaders = {status: r.status, body: await r.json(), deadline: r.headers.get("Deadline")};
  } catch (e) {
    out.error = String(e);
  }
  document.getElementById("result").textContent = JSON.stringify(out);
}
run();
</script></body></html>`

// TestBrowserCallsFromAnotherOrigin loads a page in headless Chromium that
// calls the server from another origin with Connect JSON and gRPC-Web over
// HTTP/1.1: CORS must let the calls through and expose the gRPC status
// headers, or a browser client loses the error codes; and the operator's
// own headers and credentials, once configured, must pass too. CI installs Chromium;
// elsewhere the test is skipped without it.
func TestBrowserCallsFromAnotherOrigin(t *testing.T) {
	t.Parallel()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install chromium)")
	}
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(browserPage))
	}))
	t.Cleanup(page.Close)
	srv := newPingServer(t, kit.Config{
		CORSAllowedOrigins:   []string{page.URL},
		CORSAllowedHeaders:   []string{"X-Api-Key"},
		CORSExposedHeaders:   []string{"Deadline"},
		CORSAllowCredentials: true,
	}, nil)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-first-run", "--user-data-dir="+t.TempDir(),
		"--virtual-time-budget=20000", "--dump-dom", page.URL+"/?api="+srv.URL)
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, dom)
	}
	m := regexp.MustCompile(`(?s)<pre id="result">(.*?)</pre>`).FindSubmatch(dom)
	if m == nil {
		t.Fatalf("no result in the page:\n%s", dom)
	}
	var got struct {
		Error   string
		Connect struct {
			Status    int
			Body      map[string]any
			RequestID string
		}
		ConnectError struct {
			Status int
			Body   map[string]any
		}
		GRPCWeb struct {
			Status  int
			Message []int
			Trailer string
		}
		GRPCWebError struct {
			GRPCStatus, GRPCMessage string
		}
		OwnHeaders struct {
			Status   int
			Body     map[string]any
			Deadline string
		}
	}
	if err := json.Unmarshal(m[1], &got); err != nil {
		t.Fatalf("result %q: %v", m[1], err)
	}
	if got.Error != "" {
		t.Fatalf("the page's calls failed: %s", got.Error)
	}
	if got.Connect.Status != 200 || got.Connect.Body["number"] != "7" || got.Connect.RequestID == "" {
		t.Errorf("Connect JSON call: %+v", got.Connect)
	}
	if got.ConnectError.Status != 404 || got.ConnectError.Body["code"] != "not_found" {
		t.Errorf("Connect JSON error: %+v", got.ConnectError)
	}
	if got.GRPCWeb.Status != 200 || len(got.GRPCWeb.Message) != 2 || got.GRPCWeb.Message[1] != 7 || !regexp.MustCompile(`(?i)grpc-status:\s*0`).MatchString(got.GRPCWeb.Trailer) {
		t.Errorf("gRPC-Web call: %+v", got.GRPCWeb)
	}
	if got.GRPCWebError.GRPCStatus != "5" || got.GRPCWebError.GRPCMessage == "" {
		t.Errorf("gRPC-Web error: %+v; the browser must read Grpc-Status and Grpc-Message", got.GRPCWebError)
	}
	if got.OwnHeaders.Status != 200 || got.OwnHeaders.Body["number"] != "8" || got.OwnHeaders.Deadline == "" {
		t.Errorf("call with the page's own header and cookies: %+v", got.OwnHeaders)
	}
}
