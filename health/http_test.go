package health_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/connectkit/connectkit/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// report is the documented JSON body of /readyz and /healthz.
type report struct {
	Status       string            `json:"status"`
	ShuttingDown bool              `json:"shutting_down"`
	Services     map[string]string `json:"services"`
	Checks       []struct {
		Name     string     `json:"name"`
		Service  string     `json:"service"`
		Critical bool       `json:"critical"`
		Mode     string     `json:"mode"`
		Status   string     `json:"status"`
		Error    string     `json:"error"`
		LastRun  *time.Time `json:"last_run"`
		Duration string     `json:"duration"`
	} `json:"checks"`
}

// get GETs url and decodes its health report.
func get(tb testing.TB, url string) (int, report) {
	tb.Helper()
	res, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		tb.Fatalf("GET %s: Content-Type %q", url, ct)
	}
	var rep report
	if err := json.NewDecoder(res.Body).Decode(&rep); err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	return res.StatusCode, rep
}

func TestNonCriticalFailureShowsButDegradesNothing(t *testing.T) {
	t.Parallel()
	h := health.New()
	h.AddService(profileSvc)
	var search, db switchable
	search.fail(errors.New("search index unreachable"))
	mustAdd(t, h, health.Check{Name: "search", Service: profileSvc, NonCritical: true, Func: search.check})
	mustAdd(t, h, health.Check{Name: "db", Func: db.check})
	addr := serve(t, h)

	code, rep := get(t, "http://"+addr+"/readyz")
	if code != http.StatusOK || rep.Status != "SERVING" {
		t.Fatalf("/readyz = %d %s, want 200 SERVING", code, rep.Status)
	}
	if len(rep.Checks) != 2 {
		t.Fatalf("/readyz checks = %+v, want db and search", rep.Checks)
	}
	dbRep, searchRep := rep.Checks[0], rep.Checks[1]
	if dbRep.Name != "db" || dbRep.Status != "pass" || !dbRep.Critical || dbRep.Mode != "probe" ||
		dbRep.Error != "" || dbRep.LastRun == nil || dbRep.Duration == "" {
		t.Errorf("db check = %+v", dbRep)
	}
	if searchRep.Name != "search" || searchRep.Status != "fail" || searchRep.Critical ||
		searchRep.Service != profileSvc || searchRep.Error != "search index unreachable" || searchRep.LastRun == nil {
		t.Errorf("search check = %+v", searchRep)
	}
	if rep.Services[profileSvc] != "SERVING" || rep.Services[""] != "SERVING" {
		t.Errorf("services = %v", rep.Services)
	}
	res, err := grpcClient(t, addr).Check(ctxTimeout(t), &healthpb.HealthCheckRequest{Service: profileSvc})
	if err != nil || res.GetStatus() != serving {
		t.Fatalf("gRPC Check = %v, %v; want SERVING", res.GetStatus(), err)
	}

	db.fail(errors.New("connection refused"))
	code, rep = get(t, "http://"+addr+"/readyz")
	if code != http.StatusServiceUnavailable || rep.Status != "NOT_SERVING" || rep.Checks[0].Error != "connection refused" {
		t.Fatalf("/readyz with db down = %d %+v", code, rep)
	}
}

func TestLivenessIgnoresReadiness(t *testing.T) {
	t.Parallel()
	h := health.New()
	var db, loop switchable
	db.fail(errors.New("down"))
	mustAdd(t, h, health.Check{Name: "db", Func: db.check})
	mustAdd(t, h, health.Check{Name: "worker-loop", Liveness: true, Func: loop.check})
	addr := serve(t, h)

	code, rep := get(t, "http://"+addr+"/healthz")
	if code != http.StatusOK || rep.Status != "SERVING" || len(rep.Checks) != 1 || rep.Checks[0].Name != "worker-loop" {
		t.Fatalf("/healthz with db down = %d %+v, want 200 listing worker-loop only", code, rep)
	}
	loop.fail(errors.New("stuck for 5m"))
	code, rep = get(t, "http://"+addr+"/healthz")
	if code != http.StatusServiceUnavailable || rep.Checks[0].Error != "stuck for 5m" {
		t.Fatalf("/healthz with a stuck loop = %d %+v, want 503", code, rep)
	}
	db.pass()
	if code, rep := get(t, "http://"+addr+"/readyz"); code != http.StatusOK || len(rep.Checks) != 1 {
		t.Fatalf("/readyz = %d %+v: liveness checks must not decide readiness", code, rep)
	}
}

func TestHTTPMethods(t *testing.T) {
	t.Parallel()
	addr := serve(t, health.New())
	for _, path := range []string{"/readyz", "/healthz"} {
		res, err := http.Head("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK || len(b) != 0 {
			t.Errorf("HEAD %s = %d with %d bytes, want 200 and no body", path, res.StatusCode, len(b))
		}
		res, err = http.Post("http://"+addr+path, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("POST %s = %d Allow %q, want 405 GET, HEAD", path, res.StatusCode, res.Header.Get("Allow"))
		}
	}
}

// TestErrorsAreHiddenUnlessShown: a handler mounted with no option, where
// the public may reach it, gives no check's error text away (it named the
// database's address); ShowErrors shows them, HideErrors after it hides
// them again.
func TestErrorsAreHiddenUnlessShown(t *testing.T) {
	t.Parallel()
	h := health.New()
	var db switchable
	db.fail(errors.New("dial tcp 10.1.2.3:5432: connection refused"))
	mustAdd(t, h, health.Check{Name: "db", Func: db.check})
	mustAdd(t, h, health.Check{Name: "db-live", Func: db.check, Liveness: true})
	for _, tc := range []struct {
		name  string
		opts  []health.HTTPOption
		shown bool
	}{
		{"default", nil, false},
		{"HideErrors", []health.HTTPOption{health.HideErrors()}, false},
		{"ShowErrors", []health.HTTPOption{health.ShowErrors()}, true},
		{"ShowErrors then HideErrors", []health.HTTPOption{health.ShowErrors(), health.HideErrors()}, false},
	} {
		for path, handler := range map[string]http.Handler{"/readyz": h.ReadyHandler(tc.opts...), "/healthz": h.LiveHandler(tc.opts...)} {
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			body := rec.Body.String()
			if shown := strings.Contains(body, "10.1.2.3"); shown != tc.shown || !tc.shown && !strings.Contains(body, `"error":"hidden"`) ||
				!strings.Contains(body, `"name":"db`) || !strings.Contains(body, `"status":"fail"`) {
				t.Errorf("%s %s: %d %s; want the error shown: %v, the check's name and status", tc.name, path, rec.Code, body, tc.shown)
			}
		}
	}
}
