package natsjs

import (
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// clustered reports whether nc is connected to a server of a NATS
// cluster. A leaf node without a cluster of its own is one server, though
// its INFO names a cluster: nats-server gives it its server name, which
// its own monitoring (varz) then hides as no cluster.
func clustered(nc *nats.Conn) bool {
	cluster := nc.ConnectedClusterName()
	return cluster != "" && cluster != nc.ConnectedServerName()
}

// notClusteredError is the error of a broker whose NATS_REPLICAS asks for
// more than one replica on a server that is not part of a cluster, where
// JetStream refuses every stream it would create (error 10074), or nil.
// No retry mends it: New refuses to start so, and a broker that connected
// in the background logs it. A leaf node without a cluster of its own only
// gets a warning: its clients' JetStream may be a hub cluster's, which it
// extends (no JetStream domain of its own), and takes the replicas.
func (b *Broker) notClusteredError(nc *nats.Conn) error {
	if b.cfg.URL == "" || b.cfg.Replicas <= 1 || clustered(nc) {
		return nil
	}
	if nc.ConnectedClusterName() != "" { // a leaf node's (see clustered)
		b.logger.Warn("natsjs: NATS_REPLICAS is above 1 on a leaf node without a cluster of its own: each publish of a new topic fails "+
			"unless its JetStream is that of a hub cluster it extends; otherwise set NATS_REPLICAS to 1 or leave it unset",
			"server", nc.ConnectedServerName(), "replicas", b.cfg.Replicas)
		return nil
	}
	return fmt.Errorf("natsjs: NATS_REPLICAS is %d, but %s (server %s) is not part of a cluster, where a stream has one replica; "+
		"set NATS_REPLICAS to 1 or leave it unset", b.cfg.Replicas, redactURLs(nc.ConnectedUrl()), nc.ConnectedServerName())
}

// warnSingleReplica logs a warning when nc is connected to a server of a
// NATS cluster and the streams this broker creates get one replica: each
// lives on one server of it, whose loss makes the messages it
// acknowledged unavailable until that server is back, and loses them with
// its storage, what a user who runs a cluster does not expect. The
// default stays 1, since more fail on a single server (no suitable peers
// for placement). A leaf node without a cluster of its own gets no
// warning (see clustered). The advice is as many replicas as the
// cluster's servers that run JetStream, not 3 outright: on a cluster where
// fewer run it, 3 would fail every publish of a new topic.
func (b *Broker) warnSingleReplica(nc *nats.Conn) {
	if b.cfg.URL == "" || b.cfg.Replicas != 1 || !clustered(nc) {
		return
	}
	b.logger.Warn("natsjs: NATS_REPLICAS is 1 on a NATS cluster: each stream this service creates is stored on one server, "+
		"whose loss makes its acknowledged messages unavailable until it is back and loses them with its storage; "+
		"set NATS_REPLICAS to the number of the cluster's servers that run JetStream, up to 5 (usually 3)",
		"cluster", nc.ConnectedClusterName(), "replicas", b.cfg.Replicas)
}

// jsErrNoPeers is JetStream's error code for a stream whose replicas it
// cannot place: the cluster has fewer servers with JetStream up, and room,
// than the replicas asked for (nats-server's errors.json,
// JSClusterNoPeersErrF).
const jsErrNoPeers jetstream.ErrorCode = 10005

// jsErrReplicasNotClustered is JetStream's error code for a stream of
// more than one replica on a server that is not part of a cluster
// (nats-server's errors.json, JSStreamReplicasNotSupportedErr).
const jsErrReplicasNotClustered jetstream.ErrorCode = 10074

// placementError returns err, the error of creating or updating the
// stream of want (what names it), saying that NATS_REPLICAS asks for more
// replicas than the cluster can place, when it says so; nil otherwise. It
// stays Unavailable: a cluster short of a server while one restarts
// refuses so too, and takes the stream once the server is back. More than
// one replica on a server that is no cluster is FailedPrecondition: no
// retry mends it, only NATS_REPLICAS does (New refuses it when it
// connects, but not a broker that connected in the background).
func (b *Broker) placementError(what string, want jetstream.StreamConfig, err error) error {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return nil
	}
	if apiErr.ErrorCode == jsErrReplicasNotClustered {
		return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
			"natsjs: failed to %s with %d replicas (NATS_REPLICAS %d): the server is not part of a cluster; set NATS_REPLICAS to 1 or leave it unset: %w",
			what, want.Replicas, b.cfg.Replicas, err))
	}
	if apiErr.ErrorCode != jsErrNoPeers {
		return nil
	}
	return fmt.Errorf("natsjs: failed to %s with %d replicas (NATS_REPLICAS %d): the cluster has fewer servers with JetStream up than that; "+
		"set NATS_REPLICAS to at most its number of servers, or bring the missing ones back: %w", what, want.Replicas, b.cfg.Replicas, err)
}
