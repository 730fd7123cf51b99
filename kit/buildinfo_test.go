package kit_test

import (
	"strings"
	"testing"

	"github.com/connectkit/connectkit/kit"
)

// /metrics serves kit_build_info with connectkit's version and the main
// module's, one series: a test binary of this module is both, "(devel)".
func TestBuildInfoAtMetrics(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{AdminAddr: "127.0.0.1:0"}, nil)
	_, body := scrape(t, srv.AdminURL, "text/plain")
	var series []string
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, "kit_build_info{") {
			series = append(series, line)
		}
	}
	want := `kit_build_info{service_version="(devel)",version="(devel)"} 1`
	if len(series) != 1 || series[0] != want {
		t.Errorf("kit_build_info series %q, want [%s]", series, want)
	}
}
