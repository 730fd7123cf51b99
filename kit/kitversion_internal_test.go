package kit

import (
	"runtime/debug"
	"testing"
)

// TestKitVersion checks the version of connectkit that the "config" line
// names, for the build infos a service's binary can have.
func TestKitVersion(t *testing.T) {
	t.Parallel()
	dep := func(m debug.Module) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Path: "example.com/orders", Version: "v0.3.0"},
			Deps: []*debug.Module{{Path: "connectrpc.com/connect", Version: "v1.19.1"}, &m}}
	}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{name: "a dependency", bi: dep(debug.Module{Path: modulePath, Version: "v1.4.0"}), ok: true, want: "v1.4.0"},
		{name: "replaced by a checkout", bi: dep(debug.Module{Path: modulePath, Version: "v0.0.0-00010101000000-000000000000",
			Replace: &debug.Module{Path: "../connectkit"}}), ok: true, want: "v0.0.0-00010101000000-000000000000 => ../connectkit"},
		{name: "replaced by a version", bi: dep(debug.Module{Path: modulePath, Version: "v1.4.0",
			Replace: &debug.Module{Path: "example.com/fork/connectkit", Version: "v1.4.1"}}), ok: true, want: "v1.4.0 => example.com/fork/connectkit v1.4.1"},
		{name: "connectkit's own binary", bi: &debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "(devel)"}}, ok: true, want: "(devel)"},
		{name: "not a dependency", bi: dep(debug.Module{Path: "example.com/other", Version: "v1.0.0"}), ok: true, want: ""},
		{name: "no build info", ok: false, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := kitVersion(tc.bi, tc.ok); got != tc.want {
				t.Errorf("kitVersion = %q, want %q", got, tc.want)
			}
		})
	}
}
