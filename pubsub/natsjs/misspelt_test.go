package natsjs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"testing"

	"github.com/connectkit/connectkit/pubsub/natsjs"
)

// TestMisspeltEnvIsLoggedWithTheVariableMeant sets a misspelt NATS_URL
// (t.Setenv: not parallel) beside variables that other tools set under
// NATS_ (the nats CLI's, a Kubernetes Service's named nats), and checks
// that New, given ConfigFromEnv's Config, warns of the misspelt one alone,
// naming the variable meant, before it starts the embedded server that the
// misspelling selects: before, a service meant for a shared cluster
// started one of its own without a word, and its events reached no other
// service. A Config built in code warns of nothing, as package kit's.
func TestMisspeltEnvIsLoggedWithTheVariableMeant(t *testing.T) {
	t.Setenv("NATS_ULR", "nats://nats.messaging:4222")
	t.Setenv("NATS_MAX_AEG", "1h")
	t.Setenv("NATS_DATA_DIR", t.TempDir())
	for name, value := range map[string]string{
		"NATS_USER": "alice", "NATS_PASSWORD": "pw", "NATS_CONTEXT": "prod", "NATS_CERT": "c.pem",
		"NATS_KEY": "k.pem", "NATS_CA": "ca.pem", "NATS_NKEY": "n.nk", "NATS_TIMEOUT": "5s",
		"NATS_SOCKS_PROXY": "", "NATS_COLOR": "1", "NATS_INBOX_PREFIX": "_I", "NATS_DOMAIN": "hub",
		"NATS_SERVICE_HOST": "10.0.0.11", "NATS_SERVICE_PORT": "4222", "NATS_PORT": "tcp://10.0.0.11:4222",
		"NATS_PORT_4222_TCP": "tcp://10.0.0.11:4222", "NATS_PORT_4222_TCP_ADDR": "10.0.0.11",
		"NATS_PORT_4222_TCP_PORT": "4222", "NATS_PORT_4222_TCP_PROTO": "tcp",
	} {
		t.Setenv(name, value)
	}
	cfg, err := natsjs.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	warned := func(cfg natsjs.Config) (map[string]string, string) {
		var logs lockedBuffer
		b, err := natsjs.New(context.Background(), cfg, natsjs.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		got := map[string]string{}
		for line := range bytes.Lines([]byte(logs.String())) {
			var rec struct {
				Level, Msg, Variable string
				Near                 string `json:"did_you_mean"`
			}
			if err := json.Unmarshal(line, &rec); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if rec.Msg == "natsjs: unknown NATS_ variable ignored" {
				if rec.Level != "WARN" {
					t.Errorf("%s logged at %s, want WARN", rec.Variable, rec.Level)
				}
				got[rec.Variable] = rec.Near
			}
		}
		return got, logs.String()
	}
	want := map[string]string{"NATS_ULR": "NATS_URL", "NATS_MAX_AEG": "NATS_MAX_AGE"}
	if got, logs := warned(cfg); !maps.Equal(got, want) {
		t.Errorf("warned of %v, want %v; logs:\n%s", got, want, logs)
	}
	if got, logs := warned(natsjs.Config{DataDir: t.TempDir()}); len(got) != 0 {
		t.Errorf("a Config built in code: warned of %v, want nothing; logs:\n%s", got, logs)
	}
}
