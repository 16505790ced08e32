package processor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// TestPurgeDeniedFailsAtStart: when the brokers refuse DeleteRecords (no
// Delete ACL), Run fails with a *FatalError that names the permission at
// its start, not at the first purge tick (an hour away here). The refusal
// is kfake's answer to every DeleteRecords request; the secured broker's
// ACLs are TestIntegrationSecureMissingACL's.
func TestPurgeDeniedFailsAtStart(t *testing.T) {
	c := testbroker.NewKfake(t)
	brokers := c.ListenAddrs()
	app := testbroker.Unique(t, "probe")
	input, output := app+"-lines", app+"-counts"
	testbroker.CreateTopic(t, brokers, input, 2, nil)
	testbroker.CreateTopic(t, brokers, output, 2, nil)
	c.ControlKey(int16(kmsg.DeleteRecords), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kr.(*kmsg.DeleteRecordsRequest)
		resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
		resp.Version = req.Version
		for _, rt := range req.Topics {
			tt := kmsg.NewDeleteRecordsResponseTopic()
			tt.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				pp := kmsg.NewDeleteRecordsResponseTopicPartition()
				pp.Partition = rp.Partition
				pp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				tt.Partitions = append(tt.Partitions, pp)
			}
			resp.Topics = append(resp.Topics, tt)
		}
		return resp, nil, true
	})
	p, err := New(wordcount(t, input, output), append(testOpts(t, brokers, app), PurgeInterval(time.Hour))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = p.Run(ctx)
	if ctx.Err() != nil {
		t.Fatalf("Run did not fail within 2 minutes (the purge's first tick is an hour away): %v", err)
	}
	fe, ok := errors.AsType[*FatalError](err)
	if !ok || !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("Run = %T %v, want a *FatalError of TOPIC_AUTHORIZATION_FAILED", err, err)
	}
	if !strings.Contains(fe.Fix, "Delete") || !strings.Contains(err.Error(), app+"-by-word-repartition") {
		t.Errorf("the error does not name the permission and the topic: %v", err)
	}
}
