package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/authn"
	"connectrpc.com/connect"
)

// apiTokens are the static bearer tokens of EXAMPLE_API_TOKENS, each with
// the name of its caller: the simplest authentication a service can have,
// the pattern for a JWT or an introspection call too (kit.WithAuth).
type apiTokens []apiToken

type apiToken struct {
	sum    [sha256.Size]byte // of the token: compared, the token is not kept
	caller caller
}

// caller is the caller that apiTokens.authenticate lets in: handlers read
// it with authn.GetInfo, and its Principal names it in the rpc log lines.
type caller string

// Principal returns the caller's name, for the rpc log lines.
func (c caller) Principal() string { return string(c) }

// parseAPITokens reads EXAMPLE_API_TOKENS's value, comma-separated
// token=caller pairs ("s3cr3t=alice,0th3r=bob"), split at a pair's last
// "=", so that a token may end in base64's padding. Empty is none: the
// example then serves every caller. Its errors never quote a token.
func parseAPITokens(v string) (apiTokens, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var ts apiTokens
	for i, pair := range strings.Split(v, ",") {
		// The last "=": a token may hold some (base64's padding), a
		// caller's name may not.
		pair = strings.TrimSpace(pair)
		eq := strings.LastIndexByte(pair, '=')
		token, name := pair[:max(eq, 0)], pair[eq+1:]
		if eq < 0 || token == "" || name == "" {
			return nil, fmt.Errorf("EXAMPLE_API_TOKENS: entry %d is not token=caller", i+1)
		}
		ts = append(ts, apiToken{sum: sha256.Sum256([]byte(token)), caller: caller(name)})
	}
	return ts, nil
}

// authenticate is the example's kit.WithAuth func: a call needs
// "Authorization: Bearer <token>" with one of ts's tokens. The tokens are
// compared by their SHA-256 sums, each in constant time and all of them
// every time, so that the time a refusal takes tells nothing of how close
// a guess came, nor its length.
func (ts apiTokens) authenticate(_ context.Context, r *http.Request) (any, error) {
	// The scheme's case does not matter (RFC 9110, section 11.1).
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, challenge(authn.Errorf("missing bearer token"), "")
	}
	sum := sha256.Sum256([]byte(token))
	var found caller
	for _, t := range ts {
		if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
			found = t.caller
		}
	}
	if found == "" {
		return nil, challenge(authn.Errorf("unknown bearer token"), "invalid_token")
	}
	return found, nil
}

// challenge gives err, a refusal for want of credentials, the
// WWW-Authenticate header that RFC 9110 (section 11.6.1) asks a 401 to
// carry, with RFC 6750's error code when a token was sent and is not
// known: kit writes an error's metadata as headers (trailers for gRPC).
func challenge(err *connect.Error, code string) *connect.Error {
	v := `Bearer realm="example"`
	if code != "" {
		v += `, error="` + code + `"`
	}
	err.Meta().Set("WWW-Authenticate", v)
	return err
}
