package main

import (
	"syscall"
	"testing"
)

// hideFromSameUser leaves the process not dumpable (its /proc entries
// closed to the same user's other processes); the test restores it.
func TestHideFromSameUser(t *testing.T) {
	get := func() uintptr {
		v, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_GET_DUMPABLE, 0, 0)
		if errno != 0 {
			t.Fatal(errno)
		}
		return v
	}
	if get() != 1 {
		t.Fatal("the test process is not dumpable to begin with")
	}
	t.Cleanup(func() { syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 1, 0) })
	if err := hideFromSameUser(); err != nil {
		t.Fatal(err)
	}
	if v := get(); v != 0 {
		t.Errorf("dumpable = %d after hideFromSameUser, want 0", v)
	}
}
