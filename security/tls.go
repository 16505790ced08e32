package security

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSFiles names the PEM files of a TLS connection to Kafka.
type TLSFiles struct {
	// CA is a PEM file of the certificates that signed the brokers'
	// certificates (Kafka's ssl.truststore.location with
	// ssl.truststore.type=PEM). Empty: the system's roots.
	CA string
	// Cert and Key are the PEM files of the client's certificate (chain)
	// and private key, for brokers that require client certificates
	// (mutual TLS; Kafka's ssl.client.auth=required, ssl.keystore.*).
	// Both or neither.
	Cert, Key string
	// ServerName is the name the brokers' certificates must carry. Empty:
	// the host of each broker's address, as Kafka's
	// ssl.endpoint.identification.algorithm=https checks it.
	ServerName string
}

// Config reads the files and returns a TLS configuration for
// processor.TLS or sink.TLS, with TLS 1.2 as the lowest version. It fails,
// naming the file and what is wrong with it, when a file cannot be read,
// holds no PEM certificate, or the certificate and key do not match, or
// when only one of Cert and Key is given. The files are read once: a
// rotated certificate takes a restart.
func (f TLSFiles) Config() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("security: reading the CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("security: CA file %s holds no PEM certificate (want one or more -----BEGIN CERTIFICATE----- blocks)", f.CA)
		}
		c.RootCAs = pool
	}
	switch {
	case f.Cert != "" && f.Key != "":
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("security: client certificate %s with key %s: %w", f.Cert, f.Key, err)
		}
		c.Certificates = []tls.Certificate{cert}
	case f.Cert != "" || f.Key != "":
		return nil, errors.New("security: a client certificate needs both its certificate file and its key file (mutual TLS), or neither")
	}
	return c, nil
}
