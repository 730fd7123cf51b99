package main

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
	"github.com/connectkit/connectkit/gen/example/v1/examplev1connect"
	"github.com/connectkit/connectkit/kit"
)

// EXAMPLE_API_TOKENS is parsed into token=caller pairs; a malformed entry
// is named by its place, never by its text, which may hold a token.
func TestParseAPITokens(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, value string
		n           int
		err         string
	}{
		{name: "unset", value: "", n: 0},
		{name: "blank", value: "  ", n: 0},
		{name: "two", value: "s3cr3t=alice, 0th3r=bob", n: 2},
		{name: "no caller", value: "s3cr3t=alice,t0ken", err: "EXAMPLE_API_TOKENS: entry 2 is not token=caller"},
		{name: "empty token", value: "=alice", err: "EXAMPLE_API_TOKENS: entry 1 is not token=caller"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts, err := parseAPITokens(tc.value)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || len(ts) != tc.n {
				t.Fatalf("%d tokens, %v; want %d", len(ts), err, tc.n)
			}
		})
	}
}

// With EXAMPLE_API_TOKENS set, a call needs one of its bearer tokens, and
// the handler's context names its caller; health checks need none.
func TestAPITokensAuthenticate(t *testing.T) {
	t.Parallel()
	tokens, err := parseAPITokens("s3cr3t=alice,0th3r=bob")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, header string
		caller       caller
		code         connect.Code
	}{
		{name: "no header", code: connect.CodeUnauthenticated},
		{name: "basic auth", header: "Basic YWxpY2U6czNjcjN0", code: connect.CodeUnauthenticated},
		{name: "unknown token", header: "Bearer s3cr3", code: connect.CodeUnauthenticated},
		{name: "alice", header: "Bearer s3cr3t", caller: "alice"},
		{name: "scheme in lower case", header: "bearer s3cr3t", caller: "alice"},
		{name: "scheme in upper case", header: "BEARER s3cr3t", caller: "alice"},
		{name: "scheme alone", header: "Bearer", code: connect.CodeUnauthenticated},
		{name: "bob", header: "Bearer 0th3r", caller: "bob"},
	} {
		r, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://x/example.v1.ProfileService/ListProfiles", nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		info, err := tokens.authenticate(t.Context(), r)
		if tc.code != 0 && connect.CodeOf(err) != tc.code || tc.code == 0 && (err != nil || info != any(tc.caller)) {
			t.Errorf("%s: %v, %v; want %q, code %v", tc.name, info, err, tc.caller, tc.code)
		}
	}

	// A token with base64's padding is the whole token, not its part
	// before the first "=", which must not let anyone in.
	padded, err := parseAPITokens("czNjcjN0Cg===carol")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		token  string
		caller caller
	}{{token: "czNjcjN0Cg==", caller: "carol"}, {token: "czNjcjN0Cg"}} {
		r, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://x/example.v1.ProfileService/ListProfiles", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+tc.token)
		info, err := padded.authenticate(t.Context(), r)
		if tc.caller == "" && err == nil || tc.caller != "" && info != any(tc.caller) {
			t.Errorf("token %q: %v, %v; want caller %q", tc.token, info, err, tc.caller)
		}
	}

	srv := newExample(t, kit.Config{}, kit.WithAuth(tokens.authenticate))
	client := examplev1connect.NewProfileServiceClient(srv.HTTP2Client(), srv.URL, connect.WithGRPC())
	_, err = client.ListProfiles(t.Context(), connect.NewRequest(&examplev1.ListProfilesRequest{}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("ListProfiles without a token: %v, want unauthenticated", err)
	}
	req := connect.NewRequest(&examplev1.CreateProfileRequest{Name: "Ada", Email: "ada@example.com"})
	req.Header().Set("Authorization", "Bearer s3cr3t")
	if _, err := client.CreateProfile(t.Context(), req); err != nil {
		t.Errorf("CreateProfile with a token: %v", err)
	}
	// A Connect 401 carries its challenge (RFC 9110, 11.6.1), and says
	// invalid_token (RFC 6750) for a token it does not know.
	for _, tc := range []struct{ header, want string }{
		{"", `Bearer realm="example"`},
		{"Bearer s3cr3", `Bearer realm="example", error="invalid_token"`},
	} {
		r, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/example.v1.ProfileService/ListProfiles", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Content-Type", "application/json")
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		res, err := srv.HTTP1Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("WWW-Authenticate"); res.StatusCode != http.StatusUnauthorized || got != tc.want {
			t.Errorf("ListProfiles with %q: %d, WWW-Authenticate %q; want 401 with %q", tc.header, res.StatusCode, got, tc.want)
		}
	}
	res, err := srv.HTTP1Client().Post(srv.URL+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("health check without a token: %d", res.StatusCode)
	}
}

// `example list` against an example with EXAMPLE_API_TOKENS sends the
// bearer token of EXAMPLE_API_TOKEN, and lists; without it, it fails
// Unauthenticated. Not parallel: it sets the environment.
func TestListCommandSendsAPIToken(t *testing.T) {
	tokens, err := parseAPITokens("s3cr3t=alice")
	if err != nil {
		t.Fatal(err)
	}
	srv := newExample(t, kit.Config{}, kit.WithAuth(tokens.authenticate))
	req := connect.NewRequest(&examplev1.CreateProfileRequest{Name: "Ada", Email: "ada@example.com"})
	req.Header().Set("Authorization", "Bearer s3cr3t")
	client := examplev1connect.NewProfileServiceClient(srv.HTTP1Client(), srv.URL)
	if _, err := client.CreateProfile(t.Context(), req); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	t.Setenv("EXAMPLE_API_TOKEN", "")
	if err := runList(t.Context(), []string{"-target", srv.URL}, &out, io.Discard); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("example list without EXAMPLE_API_TOKEN = %v, want unauthenticated", err)
	}
	t.Setenv("EXAMPLE_API_TOKEN", "s3cr3t")
	out.Reset()
	if err := runList(t.Context(), []string{"-target", srv.URL}, &out, io.Discard); err != nil {
		t.Fatalf("example list with EXAMPLE_API_TOKEN: %v", err)
	}
	if !strings.Contains(out.String(), `"name":"Ada"`) {
		t.Errorf("example list with EXAMPLE_API_TOKEN printed %q, want Ada's profile", out.String())
	}
}
