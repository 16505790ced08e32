package exec

// MemoryTask is a Task that keeps memory for the operators from record to
// record of one task instance: what an operator learned that the stores do
// not hold and that is safe to forget. The runtime makes a new task
// instance, with empty memory, whenever it builds the task's state again (a
// start, a restart, a restore, an assignment), so memory never outlives the
// state it was learned from.
type MemoryTask interface {
	// Memory returns the task instance's memory, a map the operators key
	// with values of their own unexported types; nil when the runtime
	// keeps none.
	Memory() map[any]any
}

var _ MemoryTask = (*Scope)(nil)

// Memory implements MemoryTask: the base's memory, when the Base is a
// MemoryTask, else nil. Memory is not staged: what a record that fails
// wrote into it stays.
func (s *Scope) Memory() map[any]any {
	if m, ok := s.base.(MemoryTask); ok {
		return m.Memory()
	}
	return nil
}
