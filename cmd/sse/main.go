// Command sse reads and serves Server-Sent Events from the command line.
//
//	sse [options] URL      print the events of a stream as they arrive
//	sse serve [options]    serve the lines of standard input as events
//
// Run sse -h for the manual: options, exit status and examples.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit statuses; the manual (usage.go) documents them.
const (
	exitOK      = 0 // done as asked: -n events printed, -once stream ended, serve shut down
	exitError   = 1 // the stream failed: HTTP status, not an event stream, network
	exitUsage   = 2 // bad command line
	exitNoMore  = 3 // the server answered 204 No Content: no more events
	exitTimeout = 4 // the read timeout ended the stream (with -once or -max-attempts)
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the whole command, with its input and outputs as arguments so
// that nothing else touches the process's.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "serve" {
		return serve(args[1:], stdin, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "help" {
		fmt.Fprint(stdout, manual)
		return exitOK
	}
	return watch(args, stdin, stdout, stderr)
}

// usageError is a command line that does not parse.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// parseArgs parses fs from args, flags and operands in any order (Go's flag
// package stops at the first operand; people type options after the URL),
// and returns the operands. After "--" everything is an operand. It prints
// the manual and returns flag.ErrHelp for -h.
func parseArgs(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	fs.SetOutput(io.Discard) // errors are reported once, by the caller
	fs.Usage = func() {}
	var operands []string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				fmt.Fprint(stdout, manual)
				return nil, err
			}
			return nil, &usageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return operands, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(operands, rest...), nil
		}
		operands = append(operands, rest[0])
		args = rest[1:]
	}
}

// exitFor reports err, a failure of the command line, and returns its
// exit status; nil is 0, -h too.
func exitFor(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "sse: %s\n%s", ue.msg, synopsis)
		return exitUsage
	}
	fmt.Fprintln(stderr, message(err))
	return exitError
}

// message is err's text with the "sse: " prefix that every error of the
// command and of the library carries, once.
func message(err error) string {
	s := err.Error()
	if !strings.HasPrefix(s, "sse: ") {
		s = "sse: " + s
	}
	return s
}

// signalError is the cause of a context that a signal ended.
type signalError struct{ sig os.Signal }

func (e signalError) Error() string { return "sse: " + e.sig.String() }

// exitCode is the shell's status for a process killed by the signal.
func (e signalError) exitCode() int {
	if s, ok := e.sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return exitError
}

// onSignal calls stop, once, with the first SIGINT or SIGTERM, and then
// lets the next one kill the process as usual, so that a second Ctrl-C
// ends a shutdown that hangs. The returned function stops listening.
func onSignal(stop func(signalError)) (release func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			signal.Stop(ch)
			stop(signalError{sig})
		case <-done:
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
