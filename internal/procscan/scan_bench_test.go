package procscan

import "testing"

// BenchmarkFind is a full scan of the machine's processes.
func BenchmarkFind(b *testing.B) {
	for b.Loop() {
		if _, err := Find("SYMPHONY_RUN_ID", "nothing-carries-this"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWindowFind is the search at the end of an agent turn: only what
// started since the window opened (here: nothing).
func BenchmarkWindowFind(b *testing.B) {
	w := Open()
	for b.Loop() {
		if _, err := w.Find("SYMPHONY_RUN_ID", "nothing-carries-this"); err != nil {
			b.Fatal(err)
		}
	}
}
