package bus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDamagedStoreIsNeverSilent: a block file damaged while Symphony was
// down makes the server drop messages without complaint; Open notices
// against the manifest and fails with StoreDamageError, unless damage is
// accepted (then it runs on what is left and says so).
func TestDamagedStoreIsNeverSilent(t *testing.T) {
	dir := t.TempDir()
	b, err := Open(t.Context(), Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if _, err := PublishDurable(t.Context(), b, TurnEvents, TurnEvent{RunID: "d1", Seq: int64(i + 1), At: time.Now(), Kind: TurnText, Text: "some agent text"}, fmt.Sprint("d", i), "d1", "1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A clean reopen is fine.
	b, err = Open(t.Context(), Options{DataDir: dir})
	if err != nil {
		t.Fatalf("clean reopen: %v", err)
	}
	_ = b.Close(context.Background())

	// Damage the TURNS block in the middle and drop its index.
	blocks, _ := filepath.Glob(filepath.Join(dir, "jetstream", "jetstream", "*", "streams", StreamTurns, "msgs", "*.blk"))
	if len(blocks) == 0 {
		t.Fatal("no TURNS block file found")
	}
	f, err := os.OpenFile(blocks[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	junk := make([]byte, 4000)
	for i := range junk {
		junk[i] = 0xAB
	}
	if _, err := f.WriteAt(junk, st.Size()/3); err != nil {
		t.Fatal(err)
	}
	f.Close()
	idx, _ := filepath.Glob(filepath.Join(filepath.Dir(blocks[0]), "index.db"))
	for _, p := range idx {
		_ = os.Remove(p)
	}

	_, err = Open(t.Context(), Options{DataDir: dir})
	var dmg *StoreDamageError
	if !errors.As(err, &dmg) || !strings.Contains(err.Error(), "TURNS: last sequence") || !strings.Contains(err.Error(), "200 recorded") {
		t.Fatalf("open of a damaged store: %v", err)
	}
	b, err = Open(t.Context(), Options{DataDir: dir, AcceptStoreDamage: true})
	if err != nil {
		t.Fatalf("open accepting the damage: %v", err)
	}
	_ = b.Close(context.Background())
	// Accepted once: the manifest now records what is left.
	b, err = Open(t.Context(), Options{DataDir: dir})
	if err != nil {
		t.Fatalf("open after accepting: %v", err)
	}
	_ = b.Close(context.Background())
}
