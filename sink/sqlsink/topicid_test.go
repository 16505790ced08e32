package sqlsink_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/sink"
	"github.com/sluicehq/sluice/sink/sqlsink"
)

var (
	idA = sink.TopicID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	idB = sink.TopicID{16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
)

// The sink stores the topic id with each offset, returns it, and compares
// it in the compare-and-set: a writer that expects the offset of another
// topic (an old one of the same name) is fenced even where the numbers
// agree.
func TestTopicIDStoredAndCompared(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sql.DB) {
		ctx := context.Background()
		s := newKV(t, db)
		if err := s.Write(ctx, &sink.Batch{Group: "g",
			Records: []sink.Record{rec("in", 0, 0, "a", "1")},
			Ranges:  []sink.Range{{Topic: "in", Partition: 0, From: sink.NoOffset, To: 5, TopicID: idA}},
		}); err != nil {
			t.Fatal(err)
		}
		if got := positions(t, s, "g", "in", 0); got[0] != (sink.Position{Offset: 5, TopicID: idA}) {
			t.Fatalf("positions %v, want offset 5 of %s", got, idA)
		}
		var text string
		if err := db.QueryRow(`SELECT topic_id FROM sluice_offsets`).Scan(&text); err != nil || text != idA.String() {
			t.Errorf("topic_id column holds %q (%v), want Kafka's form %q", text, err, idA.String())
		}
		// Same offset, other topic id: fenced, nothing changed.
		err := s.Write(ctx, &sink.Batch{Group: "g",
			Records: []sink.Record{rec("in", 0, 5, "zombie", "x")},
			Ranges:  []sink.Range{{Topic: "in", Partition: 0, From: 5, FromTopicID: idB, To: 6, TopicID: idB}},
		})
		if !errors.Is(err, sink.ErrFenced) {
			t.Fatalf("write expecting another topic id = %v, want ErrFenced", err)
		}
		// The right one moves it, to a new topic's position (a topic
		// created again, started from its beginning).
		if err := s.Write(ctx, &sink.Batch{Group: "g",
			Records: []sink.Record{rec("in", 0, 0, "b", "2")},
			Ranges:  []sink.Range{{Topic: "in", Partition: 0, From: 5, FromTopicID: idA, To: 1, TopicID: idB}},
		}); err != nil {
			t.Fatal(err)
		}
		if got := positions(t, s, "g", "in", 0); got[0] != (sink.Position{Offset: 1, TopicID: idB}) {
			t.Errorf("positions %v, want offset 1 of %s", got, idB)
		}
		if got := kv(t, db); fmt.Sprint(got) != "map[a:1 b:2]" {
			t.Errorf("table %v", got)
		}
	})
}

// An offsets table created by an earlier version (no topic_id column) gets
// the column when the sink first uses it; its rows have no id (the zero
// TopicID), and the next write of each stores one.
func TestOffsetsTableWithoutTopicIDIsMigrated(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sql.DB) {
		ctx := context.Background()
		for _, stmt := range []string{
			`CREATE TABLE sluice_offsets (
	consumer_group TEXT NOT NULL,
	topic TEXT NOT NULL,
	partition_id INTEGER NOT NULL,
	next_offset BIGINT NOT NULL,
	PRIMARY KEY (consumer_group, topic, partition_id)
)`,
			`INSERT INTO sluice_offsets VALUES ('g', 'in', 0, 7)`,
		} {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				t.Fatal(err)
			}
		}
		s := newKV(t, db)
		if got := positions(t, s, "g", "in", 0); got[0] != (sink.Position{Offset: 7}) {
			t.Fatalf("positions of an old row %v, want offset 7 without a topic id", got)
		}
		if err := s.Write(ctx, &sink.Batch{Group: "g",
			Records: []sink.Record{rec("in", 0, 7, "a", "1")},
			Ranges:  []sink.Range{{Topic: "in", Partition: 0, From: 7, To: 8, TopicID: idA}},
		}); err != nil {
			t.Fatal(err)
		}
		if got := positions(t, s, "g", "in", 0); got[0] != (sink.Position{Offset: 8, TopicID: idA}) {
			t.Errorf("positions %v, want offset 8 of %s", got, idA)
		}
		// A second sink (another process) finds the column there.
		s2 := newKV(t, db)
		if got := positions(t, s2, "g", "in", 0); got[0] != (sink.Position{Offset: 8, TopicID: idA}) {
			t.Errorf("second sink reads %v", got)
		}
	})
}

// A topic_id the sink cannot parse is an error naming the row, not a
// silent zero id.
func TestBadTopicIDInTable(t *testing.T) {
	db, err := sqlsink.OpenSQLite(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := newKV(t, db)
	if got := positions(t, s, "g", "in", 0); len(got) != 0 {
		t.Fatal(got)
	}
	if _, err := db.Exec(`INSERT INTO sluice_offsets VALUES ('g', 'in', 0, 7, 'not an id')`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Offsets(context.Background(), "g", "in", []int32{0}); err == nil {
		t.Fatal("Offsets read a bad topic_id without an error")
	}
}
