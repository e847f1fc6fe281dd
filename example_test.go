package sse_test

import (
	"fmt"
	"os"
	"strings"

	"github.com/b2ce5911/sse"
)

func ExampleMessage_AppendTo() {
	m := sse.Message{ID: "42", Type: "greeting", Data: []byte("hello\nworld")}
	buf, err := m.AppendTo(nil)
	if err != nil {
		panic(err)
	}
	os.Stdout.Write(buf)
	// Output:
	// id: 42
	// event: greeting
	// data: hello
	// data: world
}

func ExampleMessage_AppendTo_invalid() {
	m := sse.Message{ID: "1\ndata: injected"}
	_, err := m.AppendTo(nil)
	fmt.Println(err)
	// Output: sse: invalid field: id contains a line break
}

func ExampleDecoder() {
	stream := "retry: 2000\n: keep-alive\nid: 1\nevent: add\ndata: {\"n\":1}\n\ndata: two\ndata: lines\n\n"
	d := sse.NewDecoder(strings.NewReader(stream))
	for {
		e, err := d.Decode()
		if err != nil {
			break // io.EOF at the clean end of the stream
		}
		fmt.Printf("id=%q type=%q data=%q\n", e.ID, e.Type, e.Bytes())
	}
	retry, _ := d.Retry()
	fmt.Println("retry", retry, "last id", d.LastEventID())
	// Output:
	// id="1" type="add" data="{\"n\":1}"
	// id="1" type="message" data="two\nlines"
	// retry 2s last id 1
}
