package kgox

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{
		"app": true, "a.b_c-D9": true, "": false, "a b": false, "a/b": false,
		strings.Repeat("x", 200): true, strings.Repeat("x", 201): false,
	} {
		if got := ValidName(s); got != want {
			t.Errorf("ValidName(%q) = %v", s, got)
		}
	}
}

func TestLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	l := Logger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if l.Level() != kgo.LogLevelWarn {
		t.Errorf("level %v at slog warn", l.Level())
	}
	l.Log(kgo.LogLevelInfo, "hidden")
	l.Log(kgo.LogLevelError, "shown", "k", 1)
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, "kafka: shown") || !strings.Contains(out, "k=1") {
		t.Errorf("log output %q", out)
	}
}

func TestClientCheck(t *testing.T) {
	ok := Client{Pkg: "sink", Brokers: []string{"h:1"}, App: "app", Session: 45 * time.Second,
		Rebalance: time.Minute, Heartbeat: 3 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	if errs := ok.Check(); len(errs) != 0 {
		t.Fatalf("valid settings refused: %v", errs)
	}
	for _, tc := range []struct {
		change func(*Client)
		want   string
	}{
		{func(c *Client) { c.Brokers = nil }, "no brokers: set sink.Brokers"},
		{func(c *Client) { c.Brokers = []string{"h"} }, `broker "h" is not host:port`},
		{func(c *Client) { c.App = "" }, "no application id: set sink.ApplicationID"},
		{func(c *Client) { c.App = "a b" }, `application id "a b": use only letters`},
		{func(c *Client) { c.InstanceID = "x/y" }, `instance id "x/y": use only letters`},
		{func(c *Client) { c.Heartbeat = time.Minute }, "heartbeat interval 1m0s must be positive and below the session timeout"},
		{func(c *Client) { c.Rebalance = time.Second }, "rebalance timeout 1s is too short"},
		{func(c *Client) { c.Logger = nil }, "logger is nil"},
	} {
		c := ok
		tc.change(&c)
		errs := c.Check()
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("Check = %v, want one error containing %q", errs, tc.want)
		}
	}
}

func TestConnectFix(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		says  string // "" for no diagnosis
		guess bool
	}{
		{"nil", nil, "", false},
		{"other", errors.New("dial tcp: connection refused"), "", false},
		{"sasl", fmt.Errorf("x: %w", kerr.SaslAuthenticationFailed), "p.SASL", false},
		{"mechanism", kerr.UnsupportedSaslMechanism, "sasl.enabled.mechanisms", false},
		{"unknown CA", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, "p.TLS", false},
		{"host name", &tls.CertificateVerificationError{Err: x509.HostnameError{Host: "h"}}, "ServerName", false},
		{"expired", x509.CertificateInvalidError{Reason: x509.Expired}, "renew", false},
		{"alert", &net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}, "-tls-cert", false},
		{"local op error", &net.OpError{Op: "dial", Err: errors.New("refused")}, "", false},
		{"not TLS", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, "does not speak TLS", false},
		{"plaintext to TLS", errors.New("invalid large response size 1 > limit 0; the first three bytes received appear to be a tls alert record for TLS v1.2; is this a plaintext connection speaking to a tls endpoint?"), "speaks TLS", false},
		{"first read EOF", fmt.Errorf("x: %w", &kgo.ErrFirstReadEOF{}), "closed the connection", true},
	} {
		fix, guess := ConnectFix("p", tc.err)
		if tc.says == "" && fix != "" || !strings.Contains(fix, tc.says) || guess != tc.guess {
			t.Errorf("%s: fix %q, guess %v; want one saying %q, guess %v", tc.name, fix, guess, tc.says, tc.guess)
		}
	}
}
