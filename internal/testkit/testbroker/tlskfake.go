package testbroker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KfakeUser and KfakePassword are the SASL credentials of NewSecureKfake's
// cluster: a SCRAM-SHA-256 super user.
const (
	KfakeUser     = "app"
	KfakePassword = "app-secret"
)

// NewSecureKfake starts a kfake cluster (NewKfake, with opts) that speaks
// TLS only, with a certificate for 127.0.0.1 signed by a CA made for the
// test, and requires SASL SCRAM-SHA-256 as KfakeUser. It returns the
// cluster and the path of the CA's PEM file (in t.TempDir()). kfake checks
// no client certificates and, without kfake.EnableACLs, no ACLs.
func NewSecureKfake(t testing.TB, opts ...kfake.Opt) (*kfake.Cluster, string) {
	t.Helper()
	caCert, caKey := newCert(t, nil, nil, "sluice test CA")
	leaf, leafKey := newCert(t, caCert, caKey, "127.0.0.1")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	server := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw}, PrivateKey: leafKey, Leaf: leaf}},
	}
	c := NewKfake(t, append([]kfake.Opt{
		kfake.TLS(server),
		kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", KfakeUser, KfakePassword),
	}, opts...)...)
	return c, caFile
}

// NewCA returns the certificate of a CA made for the test, which signed
// nothing a broker has: a client that trusts only it must refuse the
// brokers.
func NewCA(t testing.TB) *x509.Certificate {
	t.Helper()
	c, _ := newCert(t, nil, nil, "another test CA")
	return c
}

// newCert returns a certificate and its key: a CA's when parent is nil, else
// a server certificate for the IP address name signed by parent.
func newCert(t testing.TB, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign
	} else {
		tmpl.IPAddresses = []net.IP{net.ParseIP(name)}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// ReadCommittedConn is ReadCommitted with conn, the options that connect to
// the brokers (TLS, SASL), on every client it makes.
func ReadCommittedConn(t testing.TB, brokers []string, conn []kgo.Opt, topic string) []*kgo.Record {
	t.Helper()
	return readCommitted(t, DefaultReadTimeout, brokers, conn, topic)
}
