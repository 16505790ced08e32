package codec_test

import (
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/codec"
)

func Example() {
	var c codec.Codec[int64] = codec.Int64Text{}
	b, _ := c.Encode(42)
	fmt.Printf("%q\n", b)

	v, _ := c.Decode([]byte("-7"))
	fmt.Println(v)

	// A malformed record is a decode error: the runtime's bad-record policy
	// matches it with errors.Is.
	_, err := codec.Int64{}.Decode([]byte{1, 2, 3})
	fmt.Println(err)
	fmt.Println(errors.Is(err, codec.ErrDecode))
	// Output:
	// "42"
	// -7
	// codec: Int64 wants 8 bytes, got 3
	// true
}

func ExampleJSON() {
	type click struct {
		User string `json:"user"`
		Page string `json:"page"`
	}
	c := codec.JSON[click]{}
	b, _ := c.Encode(click{User: "ana", Page: "/home"})
	fmt.Println(string(b))

	_, err := c.Decode([]byte(`{"user":`))
	fmt.Println(err)
	// Output:
	// {"user":"ana","page":"/home"}
	// codec: JSON[codec_test.click] cannot decode: unexpected end of JSON input
}
