// Package proc supervises one child process that writes lines: the agent
// runner's process control, kept apart from any agent's protocol. It knows
// processes and lines, not claude or codex, and imports nothing of the
// bus, so a second agent backend reuses it as it is.
//
// Run starts the child in its own process group (its pipes real pipes, so
// the child's exit is seen even while a grandchild holds them), reads
// stdout in bounded lines (a line over the limit is counted, never held)
// batched for the caller's handler, keeps the tail of stderr, and stops the
// group — SIGTERM, SIGKILL after KillGrace — on a cancel, the end of its
// context, a handler error, or a silence. It returns only once stdout is
// read to its end and the child was waited for; by then everything in the
// group and everything carrying the caller's marker variable is killed,
// and a pipe an escaped process still holds is abandoned after DrainGrace.
// The Result says how the child ended (exit code or signal, why it was
// stopped, read and wait errors); what that means for the caller's turn is
// the caller's to decide.
package proc
