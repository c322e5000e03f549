// Command fakeagent is a stand-in for the claude CLI (and, as
// `fakeagent app-server`, for codex app-server), for tests and benchmarks
// only; see package testkit/fakeagent for its modes and options.
package main

import (
	"os"

	"github.com/symphony-oss/symphony/testkit/fakeagent"
)

func main() {
	os.Exit(fakeagent.Main(os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}
