package sqlsink

import (
	"context"
	"database/sql"
)

// Tx is the sink's transaction, handed to a Func for each record. Its
// queries take ? placeholders in every dialect; they are rewritten for the
// database (see Dialect.Rebind). It is valid only during the Func call.
type Tx struct {
	tx *sql.Tx
	d  Dialect
}

// Exec runs a statement in the transaction. An error fails the batch: the
// whole transaction is rolled back.
func (t *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(ctx, t.d.Rebind(query), args...)
}

// Query runs a query in the transaction. Close the rows before the Func
// returns.
func (t *Tx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(ctx, t.d.Rebind(query), args...)
}

// QueryRow runs a query that returns at most one row.
func (t *Tx) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, t.d.Rebind(query), args...)
}

// SQL returns the underlying transaction, for what Tx does not cover. Its
// queries take the driver's own placeholders. Do not commit or roll it back:
// the sink does.
func (t *Tx) SQL() *sql.Tx { return t.tx }

// Dialect returns the database's dialect.
func (t *Tx) Dialect() Dialect { return t.d }
