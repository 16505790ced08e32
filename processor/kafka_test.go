package processor

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMetadataSettings: only a stage's client refreshes metadata at the
// short stageMetadataMinAge (a failover inside a transaction timeout), and
// it waits as long for an unknown topic as franz-go's defaults would
// (about 20 s: 4 refreshes at 5 s); the other clients keep franz-go's
// defaults, so an outage does not multiply their metadata requests.
func TestMetadataSettings(t *testing.T) {
	p, err := New(wordcount(t, "in", "out"), ApplicationID("md"), Brokers("127.0.0.1:1"), StateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := kgo.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer defaults.Close()
	defAge := defaults.OptValue(kgo.MetadataMinAge).(time.Duration)
	defRetries := defaults.OptValue(kgo.UnknownTopicRetries).(int64)
	window := func(cl *kgo.Client) time.Duration {
		return time.Duration(cl.OptValue(kgo.UnknownTopicRetries).(int64)) * cl.OptValue(kgo.MetadataMinAge).(time.Duration)
	}

	adm, err := p.cfg.newClient(p.cfg.logger)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if got := adm.OptValue(kgo.MetadataMinAge).(time.Duration); got != defAge {
		t.Errorf("admin client's metadata min age = %v, want franz-go's default %v", got, defAge)
	}

	st, err := kgo.NewClient(p.stages[0].clientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := st.OptValue(kgo.MetadataMinAge).(time.Duration); got != stageMetadataMinAge || got >= defAge {
		t.Errorf("stage client's metadata min age = %v, want %v", got, stageMetadataMinAge)
	}
	if got, want := window(st), time.Duration(defRetries)*defAge; got < want {
		t.Errorf("stage client waits %v for an unknown topic (%d refreshes at %v), want at least franz-go's default %v",
			got, st.OptValue(kgo.UnknownTopicRetries), st.OptValue(kgo.MetadataMinAge), want)
	}
}
