package stream

import (
	"testing"

	"github.com/sluicehq/sluice/codec"
)

// TestDecodeOwned: a codec.Bytes value decoded from runtime memory is a copy
// unless the runtime marked the record Owned; then it is the input itself.
func TestDecodeOwned(t *testing.T) {
	d := newDecoder[[]byte](codec.Bytes{})
	in := []byte("value")
	copied, err := d.decodeOwned(in, false)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := d.decodeOwned(in, true)
	if err != nil {
		t.Fatal(err)
	}
	in[0] = 'V'
	if string(copied) != "value" {
		t.Errorf("not Owned: decoded %q changed with its input: not a copy", copied)
	}
	if &shared[0] != &in[0] {
		t.Errorf("Owned: decoded %q is a copy; want the input itself", shared)
	}
}
