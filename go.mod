module github.com/b2ce5911/sse

go 1.23
