package main

import (
	"fmt"
	"syscall"
)

// hideFromSameUser makes this process not dumpable: other processes of
// the same user — the agents Symphony runs, which hold the operator's
// privileges — can no longer read its environment (where the tracker key
// is, with `api_key: $LINEAR_API_KEY`), its memory, or its open files
// through /proc, nor attach to it. Children become dumpable again when
// they exec, so hooks and agents are not affected. root (CAP_SYS_PTRACE)
// still can: against an agent running as root, only another user or a
// sandbox protects the key.
func hideFromSameUser() error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0); errno != 0 {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", errno)
	}
	return nil
}
