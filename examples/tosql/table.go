package main

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/sink"
	"github.com/sluicehq/sluice/sink/sqlsink"
)

// newSink returns the SQL sink that maintains the balances table (and the
// ledger with -ledger). The SQL is the same for SQLite and PostgreSQL.
func newSink(db *sql.DB, c config) (*sqlsink.Sink, error) {
	t := c.table
	schema := []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (account TEXT PRIMARY KEY, total BIGINT NOT NULL, updates BIGINT NOT NULL)`,
	}
	if c.ledger {
		schema = append(schema, `CREATE TABLE IF NOT EXISTS `+t+`_ledger (
	topic TEXT NOT NULL,
	partition_id INTEGER NOT NULL,
	record_offset BIGINT NOT NULL,
	account TEXT NOT NULL,
	amount BIGINT NOT NULL,
	PRIMARY KEY (topic, partition_id, record_offset)
)`)
	}
	add := `INSERT INTO ` + t + ` (account, total, updates) VALUES (?, ?, 1) ` +
		`ON CONFLICT (account) DO UPDATE SET total = ` + t + `.total + excluded.total, updates = ` + t + `.updates + 1`
	del := `DELETE FROM ` + t + ` WHERE account = ?`
	ledger := `INSERT INTO ` + t + `_ledger (topic, partition_id, record_offset, account, amount) VALUES (?, ?, ?, ?, ?)`
	return sqlsink.New(db, func(ctx context.Context, tx *sqlsink.Tx, r sink.Record) error {
		if r.Key == nil {
			return fmt.Errorf("a payment needs an account as its key")
		}
		pauseIfMarked(ctx, r)
		account := string(r.Key)
		if r.Value == nil { // a tombstone closes the account
			_, err := tx.Exec(ctx, del, account)
			return err
		}
		amount, err := strconv.ParseInt(strings.TrimSpace(string(r.Value)), 10, 64)
		if err != nil {
			return fmt.Errorf("amount %q of account %q is not a whole number", r.Value, account)
		}
		if _, err := tx.Exec(ctx, add, account, amount); err != nil {
			return err
		}
		if c.ledger {
			// The primary key makes a record applied twice fail the
			// transaction instead of counting twice.
			if _, err := tx.Exec(ctx, ledger, r.Topic, r.Partition, r.Offset, account, amount); err != nil {
				return err
			}
		}
		return nil
	}, sqlsink.Schema(schema...))
}

// balance is one row of the table.
type balance struct {
	account        string
	total, updates int64
}

// readBalances returns the table, ordered by account (byte order, whatever
// the database's collation).
func readBalances(ctx context.Context, db *sql.DB, table string) ([]balance, error) {
	rows, err := db.QueryContext(ctx, `SELECT account, total, updates FROM `+table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []balance
	for rows.Next() {
		var b balance
		if err := rows.Scan(&b.account, &b.total, &b.updates); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].account < out[j].account })
	return out, rows.Err()
}
