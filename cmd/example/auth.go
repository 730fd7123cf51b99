package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/authn"
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
		return nil, authn.Errorf("missing bearer token")
	}
	sum := sha256.Sum256([]byte(token))
	var found caller
	for _, t := range ts {
		if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
			found = t.caller
		}
	}
	if found == "" {
		return nil, authn.Errorf("unknown bearer token")
	}
	return found, nil
}
