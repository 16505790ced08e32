package exec

// Global tables are full copies of a topic that every instance keeps, read
// by any task whatever its partition (stream.SourceGlobalTable). They are
// not part of a task: the runtime keeps them up to date outside the stages'
// transactions, and a Program only reads them.

// ReadStore is read-only byte-level access to a global table.
//
// Returned slices are valid until the next call on the ReadStore; copy them
// to keep them. Reads see what the runtime has applied at the moment of the
// call: a later read in the same record may see a newer value.
type ReadStore interface {
	// Get returns the value of key, and false when the key has no value.
	Get(key []byte) (value []byte, ok bool, err error)
	// Scan calls fn for every key in [lower, upper) in key order; a nil
	// upper means no upper bound. An error from fn stops the scan and is
	// returned.
	Scan(lower, upper []byte, fn func(key, value []byte) error) error
}

// GlobalTask is implemented by a Task whose runtime keeps global tables. A
// Program type-asserts its Task to GlobalTask to read them.
type GlobalTask interface {
	// Global returns the global table with the given (logical) name, or nil
	// when the runtime keeps no such table.
	Global(name string) ReadStore
}

var _ GlobalTask = (*Scope)(nil)

// Global implements GlobalTask: the base's global table, when the Base is a
// GlobalTask, else nil. Reads of global tables are not staged: a record that
// fails has written nothing to them.
func (s *Scope) Global(name string) ReadStore {
	if g, ok := s.base.(GlobalTask); ok {
		return g.Global(name)
	}
	return nil
}
