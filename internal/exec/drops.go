package exec

// Outputs of stream-time hooks. When a record moves a task's stream time,
// the compiled stage runs its hooks inside that record's Program call: a
// suppression releases the windows that closed, a left or outer
// stream-stream join emits the buffered records that can no longer pair,
// a stream-time timer fires. Each such output carries a timestamp of its
// own, older than the stream time, and flows through the operators
// downstream like a record. What goes wrong there is the output's problem,
// not the input record's: failing the input record would also undo its
// stream-time advance, so the next record would run the same hook, fail
// the same way, and a Skip policy would drop every later record of the
// partition.
//
// So the Program handles two cases itself, and reports them through the
// Task (when it implements Drops):
//
//   - An operator downstream of a hook that finds the hook's output late
//     (all its windows closed) drops it, as Kafka Streams does (it logs and
//     counts such records in its dropped-records sensor), and the input
//     record goes on. Reported with DropLate after the Program succeeded.
//   - Any other error of one hook output (a user function's error, a codec
//     error, an output or state change too large): the Program discards
//     that output's effects (RollbackTo a Savepoint taken before it) and
//     asks DropFailed what to do: go on without it, or fail the input
//     record.

// Drops is implemented by a Task (or by the Base of a Scope) whose runtime
// accounts for the hook outputs a Program drops. A Scope implements it by
// forwarding to its Base when the Base implements it.
type Drops interface {
	// DropLate reports a record that a stream-time hook emitted and that an
	// operator downstream dropped because every window it belongs to had
	// closed; err says where and why (it matches stream.ErrLateRecord).
	// The input record's call succeeded: the runtime counts the drop (as a
	// late record) and may log it; it must not fail the record.
	DropLate(err error)
	// DropFailed reports that one output of a stream-time hook failed
	// downstream with err; the Program has already discarded that output's
	// effects. A nil return drops the output and lets the input record go
	// on (its other effects and its stream-time advance stay); an error,
	// err itself or one wrapping it, fails the input record, which then
	// goes to the runtime's error policy like any failing record.
	DropFailed(err error) error
}

var _ Drops = (*Scope)(nil)

// DropLate implements Drops: it forwards to the Base when the Base
// implements Drops, and otherwise does nothing (the drop goes uncounted).
func (s *Scope) DropLate(err error) {
	if d, ok := s.base.(Drops); ok {
		d.DropLate(err)
	}
}

// DropFailed implements Drops: it forwards to the Base when the Base
// implements Drops, and otherwise returns err, failing the input record as
// if the hook output had not been isolated.
func (s *Scope) DropFailed(err error) error {
	if d, ok := s.base.(Drops); ok {
		return d.DropFailed(err)
	}
	return err
}

// Savepoint marks how far a Scope's staged effects had come; RollbackTo
// discards what was staged after it.
type Savepoint struct {
	writes, emits int
	err           error
}

// Savepoints is implemented by a Task that can discard the effects staged
// since a point of the current call (Scope does), so that one hook output
// can fail without the rest of the record.
type Savepoints interface {
	// Savepoint returns the current point.
	Savepoint() Savepoint
	// RollbackTo discards every store write and emit staged after sp, and
	// an effect error (Err) first raised after it. sp must come from the
	// same call (since the last Begin).
	RollbackTo(sp Savepoint)
}

var _ Savepoints = (*Scope)(nil)

// Savepoint implements Savepoints.
func (s *Scope) Savepoint() Savepoint {
	return Savepoint{writes: len(s.writes), emits: len(s.emits), err: s.err}
}

// RollbackTo implements Savepoints. The record's later reads no longer see
// the discarded writes.
func (s *Scope) RollbackTo(sp Savepoint) {
	if sp.writes <= len(s.writes) {
		clear(s.writes[sp.writes:])
		s.writes = s.writes[:sp.writes]
	}
	if sp.emits <= len(s.emits) {
		clear(s.emits[sp.emits:])
		s.emits = s.emits[:sp.emits]
	}
	s.err = sp.err
}
