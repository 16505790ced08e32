package kgox

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

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
