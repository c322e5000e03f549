// Package devtools holds the programs developers run through the
// Taskfile, which are not part of Symphony:
//
//   - demo: `go tool task demo`, Symphony end to end with no accounts;
//   - benchsum: the summary table of `go tool task bench`.
//
// Each is a main package run with `go run ./devtools/<name>`. Nothing but
// the Taskfile uses them, and the symphony binary links none of them
// (architecture_test.go checks).
package devtools
