module github.com/b2ce5911/sse/e2e

go 1.25

replace github.com/b2ce5911/sse => ../

require (
	github.com/b2ce5911/sse v0.0.0-00010101000000-000000000000
	github.com/chromedp/chromedp v0.23.0
)

require (
	github.com/chromedp/cdproto v0.159.0 // indirect
	github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
)
