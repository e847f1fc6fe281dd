package llmtest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// Result is what a streaming call should give: its tokens, and the error
// it ends with.
type Result struct {
	Tokens []string
	Err    Want
}

// Gives returns the Result of tokens and err.
func Gives(tokens []string, err Want) *Result { return &Result{tokens, err} }

// Want matches the error a streaming call ends with; the zero value matches
// no error only.
type Want struct {
	match func(error) bool
	desc  string
}

// Is matches an error that errors.Is finds target in.
func Is(target error) Want {
	return Want{func(err error) bool { return errors.Is(err, target) }, fmt.Sprintf("%q", target)}
}

// As matches an error that errors.As finds a T in.
func As[T error]() Want {
	var zero T
	return Want{func(err error) bool { return errors.As(err, new(T)) }, fmt.Sprintf("a %T", zero)}
}

func (w Want) matches(err error) bool {
	if w.match == nil {
		return err == nil
	}
	return w.match(err)
}

func (w Want) String() string {
	if w.match == nil {
		return "no error"
	}
	return w.desc
}

// Case is one stream, and what a call should give with each decoder.
type Case struct {
	Name     string
	Response Response
	Limit    int     // the event size limit of ours; 0 means sse.DefaultMaxEventSize
	SDK      *Result // with the SDK's decoder; nil runs none
	Ours     *Result // with sse.Decoder
}

// Compare serves each case and runs call against it, first with the SDK's
// own decoder (when the case has a result for it), then with ours: use
// switches the decoder the SDK's registry gives.
func Compare(t *testing.T, cases []Case, use func(sdk bool, limit int), call func(t *testing.T, baseURL string) ([]string, error)) {
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			url := Serve(t, tc.Response)
			if tc.SDK != nil {
				use(true, 0)
				check(t, "SDK decoder", call, url, *tc.SDK)
			}
			use(false, tc.Limit)
			check(t, "sse.Decoder", call, url, *tc.Ours)
		})
	}
}

func check(t *testing.T, who string, call func(*testing.T, string) ([]string, error), url string, want Result) {
	t.Helper()
	got, err := call(t, url)
	if !slices.Equal(got, want.Tokens) {
		t.Errorf("%s: got %q, want %q", who, got, want.Tokens)
	}
	if !want.Err.matches(err) {
		t.Errorf("%s: error %v, want %v", who, err, want.Err)
	}
}
