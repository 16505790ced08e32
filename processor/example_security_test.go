package processor_test

import (
	"crypto/tls"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/processor"
	"github.com/sluicehq/sluice/stream"
)

// Connect to brokers that require TLS and SASL. security.TLSFiles and
// security.SASL build the same from PEM files and Kafka's mechanism names;
// docs/security.md lists the ACLs the principal needs.
func ExampleTLS() {
	b := stream.NewBuilder()
	stream.To(stream.Source(b, "in", codec.String{}, codec.String{}, stream.Named("copy")), "out", codec.String{}, codec.String{})
	topo, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	dir, err := os.MkdirTemp("", "example-tls")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	p, err := processor.New(topo,
		processor.Brokers("kafka-1.internal:9093"),
		processor.ApplicationID("copier"),
		processor.StateDir(dir),
		processor.TLS(&tls.Config{MinVersion: tls.VersionTLS12}), // RootCAs nil: the system's
		processor.SASL(scram.Auth{User: "copier", Pass: os.Getenv("KAFKA_PASSWORD")}.AsSha512Mechanism()),
	)
	fmt.Println(p != nil, err)
	// Output: true <nil>
}
