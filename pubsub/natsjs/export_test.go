package natsjs

// StartTestServer is startTestServer, for the package's external tests.
var StartTestServer = startTestServer

// StartTestCluster is startTestCluster, for the package's external tests.
var StartTestCluster = startTestCluster

// StartPlainTestServer is startPlainTestServer, for the package's external
// tests.
var StartPlainTestServer = startPlainTestServer

// InFlight returns how many publishes hold room in b's window and how many
// await their ack.
func InFlight(b *Broker) (window, awaiting int) { return len(b.window), b.acks.waiting() }

// ExtraReleases is extraReleases, for the package's external tests: call
// it once the window is empty.
func ExtraReleases(b *Broker) int { return extraReleases(b) }

// PubAckError is pubAckError, for the package's external tests.
var PubAckError = pubAckError

// LookingUpStream reports whether a publish is setting up the stream of
// topic on b (it holds the setup's semaphore).
func LookingUpStream(b *Broker, topic string) bool {
	st, ok := b.streams.Load(topic)
	if !ok {
		return false
	}
	o := &st.(*streamState).once
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.sem) == 1
}

// LockedBuffer is lockedBuffer, for the package's external tests.
type LockedBuffer = lockedBuffer
