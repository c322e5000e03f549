package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The store manifest records, at every start and clean stop, the last
// sequence of every stream. A sequence never goes back: if a stream's last
// sequence is lower than the manifest says, messages that JetStream had
// acknowledged are gone (a damaged block file, which the server truncates
// at the damage and reopens without complaint). Open then fails with a
// *StoreDamageError instead of running on a silently shortened history.

const manifestFile = "store-manifest.json"

type storeManifest struct {
	At      time.Time         `json:"at"`
	LastSeq map[string]uint64 `json:"last_seq"`
}

// StoreDamageError says which streams lost messages.
type StoreDamageError struct {
	DataDir string
	// Lost describes each damaged stream: "TURNS: last sequence 66, 200 recorded".
	Lost []string
}

func (e *StoreDamageError) Error() string {
	return fmt.Sprintf("the store in %s lost acknowledged messages since the last start (%s); "+
		"keep a copy of the directory for inspection, then start `symphony run --accept-store-damage` to go on with what is left",
		e.DataDir, strings.Join(e.Lost, "; "))
}

func (b *Bus) lastSeqs(ctx context.Context) (map[string]uint64, error) {
	out := map[string]uint64{}
	// One listing request carries every stream's state (a request per
	// stream was 13 round trips at every start and stop).
	list := b.js.ListStreams(ctx)
	for info := range list.Info() {
		out[info.Config.Name] = info.State.LastSeq
	}
	if err := list.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	return out, nil
}

// checkStore compares the streams with the manifest, then records the
// current state.
func checkStore(ctx context.Context, b *Bus, accept bool) error {
	now, err := b.lastSeqs(ctx)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(filepath.Join(b.dataDir, manifestFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read the store manifest: %w", err)
	default:
		var m storeManifest
		if err := json.Unmarshal(raw, &m); err != nil {
			b.log.Warn("store manifest unreadable; starting a new one", "err", err)
			break
		}
		var lost []string
		for name, seq := range m.LastSeq {
			if got, ok := now[name]; !ok || got < seq {
				lost = append(lost, fmt.Sprintf("%s: last sequence %d, %d recorded at %s", name, got, seq, m.At.Format(time.RFC3339)))
			}
		}
		slices.Sort(lost)
		if len(lost) > 0 {
			dmg := &StoreDamageError{DataDir: b.dataDir, Lost: lost}
			if !accept {
				return dmg
			}
			b.log.Error("store damaged: running on what is left, as asked (--accept-store-damage)", "lost", strings.Join(lost, "; "))
		}
	}
	return saveManifest(b.dataDir, now)
}

func writeManifest(ctx context.Context, b *Bus) error {
	now, err := b.lastSeqs(ctx)
	if err != nil {
		return err
	}
	return saveManifest(b.dataDir, now)
}

func saveManifest(dir string, seqs map[string]uint64) error {
	raw, err := json.MarshalIndent(storeManifest{At: time.Now().UTC(), LastSeq: seqs}, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, manifestFile+".tmp")
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return fmt.Errorf("write the store manifest: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, manifestFile)); err != nil {
		return fmt.Errorf("write the store manifest: %w", err)
	}
	return nil
}
