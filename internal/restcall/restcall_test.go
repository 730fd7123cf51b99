package restcall

import (
	"net/url"
	"testing"
)

func TestMarked(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"", "message=CAE&encoding=proto&connect=v1"} {
		u := &url.URL{Path: "/pkg.Service/Method", RawQuery: raw}
		Mark(u)
		q := u.Query()
		if !Marked(q) {
			t.Errorf("Marked(%q) = false after Mark", u.RawQuery)
		}
		if raw != "" && q.Get("encoding") != "proto" {
			t.Errorf("Mark(%q) lost the query: %q", raw, u.RawQuery)
		}
	}
	for _, raw := range []string{"", "kit-rest-call=", "kit-rest-call=x", "kit-rest-call=" + value + "&kit-rest-call=" + value} {
		q, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatal(err)
		}
		if Marked(q) {
			t.Errorf("Marked(%q) = true, want false: not kit's mark", raw)
		}
	}
}
