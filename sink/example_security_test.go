package sink_test

import (
	"crypto/tls"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicehq/sluice/sink"
)

// Connect a sink runner to brokers that require TLS and SASL. The principal
// needs Read on the input topics and on the consumer group <app>-<name>.
func ExampleTLS() {
	s := &mapSink{values: map[string]string{}, offsets: map[string]sink.Position{}}
	r, err := sink.New(s,
		sink.Brokers("kafka-1.internal:9093"),
		sink.ApplicationID("balances"),
		sink.Topics("payments"),
		sink.TLS(&tls.Config{MinVersion: tls.VersionTLS12}), // RootCAs nil: the system's
		sink.SASL(scram.Auth{User: "balances", Pass: os.Getenv("KAFKA_PASSWORD")}.AsSha512Mechanism()),
	)
	fmt.Println(r != nil, err)
	// Output: true <nil>
}
