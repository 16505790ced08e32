package codec_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"testing"

	"github.com/sluicehq/sluice/codec"
)

func TestString(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"nil", nil, ""},
		{"empty", []byte{}, ""},
		{"ascii", []byte("hello"), "hello"},
		{"utf8", []byte("grüße"), "grüße"},
		{"invalid utf8 kept", []byte{0xff, 0xfe, 'a'}, "\xff\xfea"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := codec.String{}.Decode(tt.in)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Decode = %q, want %q", got, tt.want)
			}
			enc, err := codec.String{}.Encode(got)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(enc, tt.in) {
				t.Fatalf("Encode = %q, want %q", enc, tt.in)
			}
		})
	}
}

func TestStringDecodeCopies(t *testing.T) {
	in := []byte("abc")
	s, _ := codec.String{}.Decode(in)
	in[0] = 'x'
	if s != "abc" {
		t.Fatalf("Decode result changed with its input: %q", s)
	}
}

func TestBytes(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want []byte
	}{
		{"nil", nil, nil},
		{"empty is nil", []byte{}, nil},
		{"data", []byte{0, 1, 2}, []byte{0, 1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := codec.Bytes{}.Decode(tt.in)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !bytes.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Fatalf("Decode = %#v, want %#v", got, tt.want)
			}
			if len(tt.in) > 0 && &got[0] != &tt.in[0] {
				t.Fatal("Decode copied; it is documented to return its input")
			}
			enc, _ := codec.Bytes{}.Encode(tt.in)
			if len(tt.in) > 0 && &enc[0] != &tt.in[0] {
				t.Fatal("Encode copied; it is documented to return its input")
			}
		})
	}
}

func TestInt64(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    int64
		wantErr string
	}{
		{"zero", []byte{0, 0, 0, 0, 0, 0, 0, 0}, 0, ""},
		{"one", []byte{0, 0, 0, 0, 0, 0, 0, 1}, 1, ""},
		{"big endian", []byte{0, 0, 0, 0, 0, 0, 1, 0}, 256, ""},
		{"minus one", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, -1, ""},
		{"max", []byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, math.MaxInt64, ""},
		{"min", []byte{0x80, 0, 0, 0, 0, 0, 0, 0}, math.MinInt64, ""},
		{"nil", nil, 0, "codec: Int64 wants 8 bytes, got 0"},
		{"empty", []byte{}, 0, "codec: Int64 wants 8 bytes, got 0"},
		{"short", []byte{1, 2, 3}, 0, "codec: Int64 wants 8 bytes, got 3"},
		{"long", make([]byte, 9), 0, "codec: Int64 wants 8 bytes, got 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := codec.Int64{}.Decode(tt.in)
			if tt.wantErr != "" {
				checkDecodeErr(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Decode = %d, want %d", got, tt.want)
			}
			enc, err := codec.Int64{}.Encode(tt.want)
			if err != nil || !bytes.Equal(enc, tt.in) {
				t.Fatalf("Encode(%d) = %x, %v; want %x", tt.want, enc, err, tt.in)
			}
		})
	}
}

func TestInt64Text(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr string
	}{
		{"zero", "0", 0, ""},
		{"positive", "42", 42, ""},
		{"negative", "-7", -7, ""},
		{"plus sign", "+5", 5, ""},
		{"max", "9223372036854775807", math.MaxInt64, ""},
		{"min", "-9223372036854775808", math.MinInt64, ""},
		{"empty", "", 0, "codec: Int64Text wants a decimal number, got no bytes"},
		{"letters", "abc", 0, `codec: Int64Text cannot decode "abc": not a decimal number`},
		{"space", " 1", 0, `codec: Int64Text cannot decode " 1": not a decimal number`},
		{"underscore", "1_000", 0, `codec: Int64Text cannot decode "1_000": not a decimal number`},
		{"hex", "0x10", 0, `codec: Int64Text cannot decode "0x10": not a decimal number`},
		{"overflow", "9223372036854775808", 0, `codec: Int64Text cannot decode "9223372036854775808": out of the int64 range`},
		{"long input truncated", "123456789012345678901234567890123456789", 0,
			`codec: Int64Text cannot decode "12345678901234567890123456789012"...: out of the int64 range`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := codec.Int64Text{}.Decode([]byte(tt.in))
			if tt.wantErr != "" {
				checkDecodeErr(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Decode = %d, want %d", got, tt.want)
			}
			enc, err := codec.Int64Text{}.Encode(tt.want)
			if err != nil || string(enc) != strconv.FormatInt(tt.want, 10) {
				t.Fatalf("Encode(%d) = %q, %v", tt.want, enc, err)
			}
		})
	}
}

func TestInt64TextDecodeNil(t *testing.T) {
	_, err := codec.Int64Text{}.Decode(nil)
	checkDecodeErr(t, err, "codec: Int64Text wants a decimal number, got no bytes")
}

func TestInt64TextUnwrapsNumError(t *testing.T) {
	_, err := codec.Int64Text{}.Decode([]byte("x"))
	var ne *strconv.NumError
	if !errors.As(err, &ne) {
		t.Fatalf("error %v does not unwrap to *strconv.NumError", err)
	}
}

type order struct {
	ID    string  `json:"id"`
	Total float64 `json:"total"`
}

func TestJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    order
		wantErr string
	}{
		{"object", []byte(`{"id":"a1","total":2.5}`), order{ID: "a1", Total: 2.5}, ""},
		{"unknown field ignored", []byte(`{"id":"a1","x":1}`), order{ID: "a1"}, ""},
		{"nil", nil, order{}, "codec: JSON[codec_test.order] wants a JSON document, got no bytes"},
		{"empty", []byte{}, order{}, "codec: JSON[codec_test.order] wants a JSON document, got no bytes"},
		{"malformed", []byte(`{"id":`), order{}, "codec: JSON[codec_test.order] cannot decode: unexpected end of JSON input"},
		{"wrong type", []byte(`{"total":"x"}`), order{},
			"codec: JSON[codec_test.order] cannot decode: json: cannot unmarshal string into Go struct field order.total of type float64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := codec.JSON[order]{}.Decode(tt.in)
			if tt.wantErr != "" {
				checkDecodeErr(t, err, tt.wantErr)
				if got != (order{}) {
					t.Fatalf("Decode returned %+v with an error, want the zero value", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Decode = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestJSONRoundTrip(t *testing.T) {
	in := map[string][]int{"a": {1, 2}, "b": nil}
	c := codec.JSON[map[string][]int]{}
	b, err := c.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || len(out["a"]) != 2 || out["a"][1] != 2 {
		t.Fatalf("round trip = %v, want %v", out, in)
	}
}

func TestJSONEncodeError(t *testing.T) {
	_, err := codec.JSON[float64]{}.Encode(math.NaN())
	if err == nil {
		t.Fatal("Encode(NaN) succeeded")
	}
	var ue *json.UnsupportedValueError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v does not wrap *json.UnsupportedValueError", err)
	}
	if errors.Is(err, codec.ErrDecode) {
		t.Fatalf("encode error %v matches ErrDecode", err)
	}
}

func TestDecodeErrorIs(t *testing.T) {
	_, err := codec.Int64{}.Decode([]byte{1})
	if !errors.Is(err, codec.ErrDecode) {
		t.Fatalf("errors.Is(%v, ErrDecode) = false", err)
	}
	var de *codec.DecodeError
	if !errors.As(err, &de) || de.Codec != "Int64" || de.Reason != "wants 8 bytes, got 1" {
		t.Fatalf("errors.As = %+v", de)
	}
	if errors.Is(errors.New("other"), codec.ErrDecode) {
		t.Fatal("unrelated error matches ErrDecode")
	}
}

func TestCodecsAreZeroSize(t *testing.T) {
	// Compile-time: the implementations are Codecs of the documented types.
	var (
		_ codec.Codec[string] = codec.String{}
		_ codec.Codec[[]byte] = codec.Bytes{}
		_ codec.Codec[int64]  = codec.Int64{}
		_ codec.Codec[int64]  = codec.Int64Text{}
		_ codec.Codec[order]  = codec.JSON[order]{}
	)
}

// checkDecodeErr fails t unless err is a decode error with exactly the message
// want.
func checkDecodeErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	if !errors.Is(err, codec.ErrDecode) {
		t.Fatalf("error %v does not match ErrDecode", err)
	}
	if err.Error() != want {
		t.Fatalf("error = %q\nwant    %q", err.Error(), want)
	}
}
