package linearscope

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"
)

// TestSchemaIsLinearsPublished pins the embedded schema to the file of
// ../shared/linear (README there: SDK 88.3.0) and keeps it in step with the
// tracker's test copy while that copy exists.
func TestSchemaIsLinearsPublished(t *testing.T) {
	const want = "b00d24d8d252a306f5e2088267b1a17dd6e4442f8b793928410b8d4673a7081d"
	sum := sha256.Sum256([]byte(schemaSDL))
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Errorf("embedded schema sha256 %s, want %s", got, want)
	}
	if raw, err := os.ReadFile("../testdata/linear-schema.graphql"); err == nil && string(raw) != schemaSDL {
		t.Errorf("../testdata/linear-schema.graphql differs from the embedded schema")
	}
	if _, err := Schema(); err != nil {
		t.Fatal(err)
	}
}
