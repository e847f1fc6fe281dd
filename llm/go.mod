module github.com/b2ce5911/sse/llm

go 1.26.0

replace github.com/b2ce5911/sse => ../

require (
	github.com/anthropics/anthropic-sdk-go/v2 v2.15.0
	github.com/b2ce5911/sse v0.0.0
	github.com/openai/openai-go/v3 v3.98.0
)

require (
	github.com/coder/websocket v1.8.15 // indirect
	github.com/tidwall/gjson v1.20.0 // indirect
	github.com/tidwall/match v1.1.1 // indirect
	github.com/tidwall/pretty v1.2.1 // indirect
	github.com/tidwall/sjson v1.2.5 // indirect
)
