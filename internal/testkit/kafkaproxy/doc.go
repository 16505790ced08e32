// Package kafkaproxy is a loopback TCP proxy between Kafka clients and
// brokers, for fault injection in tests. It forwards bytes unchanged in both
// directions, but reads every request frame's header (size, api key, api
// version, correlation id, client id) and keeps, per connection, the requests
// that await a response. With that it can:
//
//   - let a hook decide per request to forward it, to close the connection
//     without forwarding it (CutBeforeRequest), or to forward it and close the
//     connection when the broker's response arrives, before the client sees
//     it (CutBeforeResponse): the broker acted, the client cannot know;
//   - close connections at random (CloseRandom), reporting which requests
//     were in flight on them.
//
// # Advertised addresses
//
// A broker advertises its own host and port in Metadata responses, and a
// client that bootstrapped through the proxy would then open its other
// connections to the broker directly. So the proxy rewrites the broker
// endpoints in Metadata (api key 3), FindCoordinator (10) and DescribeCluster
// (60) responses: each upstream broker address is replaced with the address
// of a local listener that forwards to that broker, started the first time
// the address is seen. Nothing else is ever rewritten. The responses are
// decoded and encoded again with kmsg at the request's version, so the
// rewrite works with every version the client and broker agree on.
// (franz-go only uses a FindCoordinator response's node id and looks the
// address up in the metadata, but other clients use its host and port.)
//
// This works with real Kafka and with kfake alike. With kfake there is an
// alternative: kfake advertises its listener's Addr, so a kfake.ListenFn
// listener whose Addr reports the proxy's address makes the cluster
// advertise the proxy. The rewrite needs no cooperation from the broker, so
// the proxy always does it.
//
// Requests whose api key kmsg does not know are forwarded like any other;
// only Request.Decode fails for them.
//
// It is part of the test kit (internal/testkit): only _test.go files import
// it (crashtest's TestNotImportedByCode checks).
package kafkaproxy
