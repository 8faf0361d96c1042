// Package redis is a Socket.IO adapter for pkg/socketio that links
// servers through Redis pub/sub, speaking
// the wire format of Node's @socket.io/redis-adapter 8.3.0 (classic
// pub/sub: Broker; sharded pub/sub: ShardedBroker) and
// @socket.io/redis-emitter 5.1.0, so Go and Node servers and Node
// emitters can share one cluster.
//
// Use:
//
//	b, err := redis.NewBroker(redis.Config{Client: client, Logger: log, Registerer: reg})
//	...
//	b.Start()        // starts the Broker's goroutines
//	io, err := socketio.NewServer(socketio.Config{Adapter: b.New})
//	...
//	io.Shutdown(ctx) // closes every namespace's adapter
//	b.Shutdown(ctx)  // stops the Broker's goroutines
//
// One Broker serves one socketio.Server: it holds one subscription
// connection for all namespaces, a reader, a dispatcher that handles
// broadcasts and requests one at a time in Redis's order, another for
// responses, a publisher and a supervisor. Listeners of server-side
// events, and socket handlers run by remote requests (disconnect, say),
// run on the first dispatcher: they may make requests of their own and
// wait for them, but one that blocks holds up the broadcasts behind it.
//
// # Wire format
//
// Channels, with prefix P (Config.Prefix, Node's `key`) and namespace N:
//
//	P#N#          broadcasts to no room or to several rooms
//	P#N#room#     broadcasts to exactly one room
//	P-request#N#  requests (subscribers counted with PUBSUB NUMSUB)
//	P-response#N# responses (where this adapter answers, as Node does by default)
//	P-response#N#uid#  responses for one server (Node's publishOnSpecificResponseChannel)
//
// The adapter subscribes to the pattern P#N#* (glob characters of P#N#
// escaped) and to the three other channels.
//
// A broadcast is msgpack [uid, packet, {rooms, except, flags}], the packet
// {type, data, nsp} (id when it has one). Requests are JSON {uid,
// requestId, type, ...}, types 0 to 9 as in Node (SOCKETS, ALL_ROOMS,
// REMOTE_JOIN, REMOTE_LEAVE, REMOTE_DISCONNECT, REMOTE_FETCH,
// SERVER_SIDE_EMIT, BROADCAST, BROADCAST_CLIENT_COUNT, BROADCAST_ACK);
// BROADCAST requests and BROADCAST_ACK responses are msgpack, all other
// responses JSON. A received request or response is JSON when its first
// byte is '{', msgpack otherwise. Lists are [] when empty, never absent or
// null; flags.timeout is in milliseconds.
//
// The msgpack codec makes notepack.io's choices: a number is an integer in
// the smallest format when integral, a float 64 otherwise; []byte is bin;
// Go maps are encoded with sorted keys; structs and values with their own
// JSON encoding are encoded as encoding/json sees them. It decodes what
// notepack decodes, including fixext 1 of type 0 (JS undefined, as nil),
// ext type 0 (ArrayBuffer, as []byte) and dates (as time.Time). Decoded
// integers are int64, other numbers float64, whichever codec carried
// them.
//
// A server ignores its own messages, broadcasts on the channel of a room
// it does not have, and packets of another namespace, as Node does.
//
// # Differences from Node, all compatible on the wire
//
//   - socketsJoin, socketsLeave and disconnectSockets act on the local
//     sockets at once and skip the request when it comes back from Redis;
//     Node acts only when its own request comes back, so nothing happens
//     while Redis is down.
//   - The BROADCAST request is registered before it is published, and a
//     server skips BROADCAST requests with its own uid as well as its own
//     request ids: it never delivers its own broadcast twice.
//   - Remote BROADCAST requests are delivered with their volatile and
//     compress flags (Node drops the flags).
//   - A request waits RequestTimeout in all, PUBSUB NUMSUB included, and
//     its error is a *TimeoutError that says how many of how many servers
//     answered.
//   - Publishing never blocks: messages go through a bounded queue to one
//     publisher (pipelined, so in order), and are dropped and counted when
//     the queue is full or when they could not be published within
//     PublishTimeout.
//   - Each Broker publishes a canary every health interval (1 s) on a
//     channel of its own, PREFIX-health#ID#, that no Node server
//     subscribes to, and replaces its subscription connection when the
//     canary has not come back within two intervals
//     (redis_errors_total{op="canary"}): that connection is on another
//     server than the one publishes reach, as after a Sentinel failover
//     while the old master is still up.
//
// Beyond socketio.Adapter, *Adapter has ClusterSockets (SOCKETS),
// RemoteJoin, RemoteLeave and RemoteDisconnect (the one-socket forms of
// REMOTE_JOIN, REMOTE_LEAVE and REMOTE_DISCONNECT).
//
// # Sharded pub/sub
//
// NewShardedBroker (Config.Mode static, dynamic or dynamic-private) is
// Node's createShardedAdapter with that subscriptionMode and channelPrefix
// P: Redis 7 SPUBLISH/SSUBSCRIBE, built on socket.io-adapter 2.5's
// ClusterAdapter (without heartbeats, as Node's 8.3.0). Channels:
//
//	P#N#        every message of the namespace
//	P#N#uid#    the responses to the server uid
//	P#N#room#   dynamic modes: a BROADCAST without acknowledgement to
//	            exactly this one room (dynamic: unless the room is 20
//	            characters long, a socket id; dynamic-private: any room)
//
// A server subscribes P#N# and its own response channel, and in the
// dynamic modes the channel of each room with a local member (dynamic:
// public rooms, not socket ids; dynamic-private: socket ids too), from
// the first member's join to the last one's leave. On a Redis Cluster
// each channel is subscribed on the master of its slot: one subscription
// connection per master in use, one SSUBSCRIBE per channel (channels of
// one command must share a slot). A connection lost, or a sunsubscribe
// Redis sends when a slot moves, makes the supervisor place the channels
// again after reloading the slot map.
//
// A message is {type, data, uid, nsp} (keys in that order), JSON, or
// msgpack when its type may carry binary (BROADCAST, BROADCAST_ACK,
// FETCH_SOCKETS_RESPONSE, SERVER_SIDE_EMIT, SERVER_SIDE_EMIT_RESPONSE)
// and its data does; read as JSON when the first byte is '{'. Types are
// the ClusterAdapter's 1 to 13; data: BROADCAST {packet: {type, data},
// requestId (only with acks), opts: {rooms, except, flags}};
// SOCKETS_JOIN/LEAVE {opts, rooms}; DISCONNECT_SOCKETS {opts, close};
// FETCH_SOCKETS {opts, requestId}; SERVER_SIDE_EMIT {requestId?, packet:
// [event, ...args]}; the responses {requestId, sockets | packet |
// clientCount} on P#N#<requester uid>#. Requests expect PUBSUB
// SHARDNUMSUB(P#N#) - 1 answers (summed over the masters); uid and
// request ids are 16 hex characters. Heartbeat and ADAPTER_CLOSE messages
// are ignored, as Node's ShardedRedisAdapter does. There is no ALL_ROOMS
// request: AllRooms is the rooms of a cluster-wide FETCH_SOCKETS.
//
// # Metrics
//
// With Config.Registerer: eventserver_redis_adapter_messages_published_total
// and _messages_received_total by type, _messages_dropped_total by reason,
// _request_duration_seconds by request type, _redis_errors_total by
// operation, _server_count by namespace and _subscribed (1 when Ready);
// in the sharded modes, _room_channels (room channels subscribed).
package redis
