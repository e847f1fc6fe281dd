module github.com/b2ce5911/sse/reliability

go 1.26.0

replace (
	github.com/b2ce5911/sse => ../
	github.com/b2ce5911/sse/redis => ../redis
)

require (
	github.com/NYTimes/gziphandler v1.1.1
	github.com/b2ce5911/sse v0.0.0
	github.com/jackc/pgx/v5 v5.12.0
	github.com/klauspost/compress v1.20.3
	github.com/redis/go-redis/v9 v9.23.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	golang.org/x/sync v0.22.0 // indirect
	golang.org/x/text v0.41.0 // indirect
)

require (
	github.com/b2ce5911/sse/postgres v0.0.0
	github.com/b2ce5911/sse/redis v0.0.0
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.48.0
)

replace github.com/b2ce5911/sse/postgres => ../postgres
