// Package kgox holds the small pieces of franz-go glue that several sluice
// packages share: a log/slog adapter for kgo's Logger, the check of names
// that become Kafka topic, group and transactional ids, and the checks of
// the client options that processor and sink both take (Client), and the TLS and SASL client options with the diagnosis of
// their failures (Security, ConnectFix). Only
// sluice's own packages may import it (it is internal).
package kgox
