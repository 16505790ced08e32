package crashtest

import (
	"os"
	"path/filepath"
	"strings"
)

// logTailBytes bounds LogTail; maxErrorLines bounds LogErrors.
const (
	logTailBytes  = 4000
	maxErrorLines = 30
)

// LogTail returns the last 4000 bytes of instance name's log (all its
// processes), or "" when there is no log.
func (h *Harness) LogTail(name string) string {
	b, _ := os.ReadFile(h.LogPath(name))
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
	}
	return string(b)
}

// LogErrors returns the lines of instance name's log that say what went
// wrong: those at level ERROR, "processor stopped" and the binary's fatal
// error line (prefixed with its name and a colon), the last 30 of them.
func (h *Harness) LogErrors(name string) string {
	b, _ := os.ReadFile(h.LogPath(name))
	return errorLines(string(b), filepath.Base(h.Bin)+":")
}

// errorLines returns the last maxErrorLines lines of log that LogErrors
// reports, for a binary whose fatal error line starts with fatalPrefix.
func errorLines(log, fatalPrefix string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "processor stopped") || strings.HasPrefix(l, fatalPrefix) {
			out = append(out, l)
		}
	}
	if len(out) > maxErrorLines {
		out = out[len(out)-maxErrorLines:]
	}
	return strings.Join(out, "\n")
}
