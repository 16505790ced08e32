package gokacodec_test

import (
	"encoding/json"
	"fmt"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/codec/gokacodec"
	"github.com/sluicehq/sluice/stream"
)

type User struct{ Name, Country string }

// UserCodec is a goka codec as goka applications write them.
type UserCodec struct{}

func (UserCodec) Encode(value interface{}) ([]byte, error) { return json.Marshal(value) }

func (UserCodec) Decode(data []byte) (interface{}, error) {
	var u User
	err := json.Unmarshal(data, &u)
	return &u, err
}

// A goka codec used as a sluice codec: T is the type its Decode returns.
func ExampleFrom() {
	users := gokacodec.From[*User](UserCodec{})

	b := stream.NewBuilder()
	table := stream.SourceTable(b, "users", codec.String{}, users, stream.Named("users"))
	names := stream.TableMapValues(table, func(_ string, u *User) string { return u.Name })
	stream.TableTo(names, "user-names", codec.String{}, codec.String{})

	u, err := users.Decode([]byte(`{"Name":"Ann","Country":"DE"}`))
	fmt.Println(u.Name, u.Country, err)
	// Output: Ann DE <nil>
}
