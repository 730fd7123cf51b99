package natsjs_test

import (
	"fmt"
	"os"

	"github.com/connectkit/connectkit/pubsub/natsjs"
)

// The NATS_* variables configure the broker (in func main:
// natsjs.New(ctx, cfg)). A value that does not parse, or settings that do
// not fit together, stop the start with an error naming the variable and
// its value.
func ExampleConfigFromEnv() {
	defer os.Unsetenv("NATS_MAX_AGE")
	defer os.Unsetenv("NATS_REPLICAS")
	defer os.Unsetenv("NATS_URL")

	os.Setenv("NATS_MAX_AGE", "2 days")
	_, err := natsjs.ConfigFromEnv()
	fmt.Println(err)

	os.Setenv("NATS_MAX_AGE", "48h")
	os.Setenv("NATS_REPLICAS", "3")
	_, err = natsjs.ConfigFromEnv()
	fmt.Println(err)

	os.Setenv("NATS_URL", "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222")
	cfg, err := natsjs.ConfigFromEnv()
	fmt.Println(cfg.Replicas, cfg.MaxAge, err)
	// Output:
	// natsjs: invalid config: NATS_MAX_AGE="2 days": want a duration such as "30s" or "2m"
	// natsjs: invalid config: Replicas (NATS_REPLICAS) "3": needs a cluster (NATS_URL); the embedded server is one server
	// 3 48h0m0s <nil>
}
