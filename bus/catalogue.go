package bus

import (
	"fmt"
	"strings"
	"time"
)

// Markers around the generated part of subjects.md.
const (
	CatalogueBegin = "<!-- BEGIN GENERATED CATALOGUE: edit bus/subjects.go, then run `go tool task generate` -->"
	CatalogueEnd   = "<!-- END GENERATED CATALOGUE -->"
)

// CatalogueMarkdown renders the subjects, streams and buckets as the tables
// that subjects.md carries between CatalogueBegin and CatalogueEnd.
func CatalogueMarkdown() string {
	var b strings.Builder
	b.WriteString("### Subjects\n\n")
	b.WriteString("| subject | kind | payload (schema) | producer | consumers | storage | meaning |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, s := range Catalogue() {
		fmt.Fprintf(&b, "| `%s` | %s | `%s` (v%d) | %s | %s | %s | %s |\n",
			s.Pattern, s.Kind, s.Payload, s.Schema, s.Producer, strings.Join(s.Consumers, ", "), s.Storage(), s.Doc)
	}
	b.WriteString("\n### Streams\n\n")
	b.WriteString("| stream | subjects | retention | meaning |\n|---|---|---|---|\n")
	for _, st := range Streams() {
		maxAge := st.MaxAge
		if maxAge == 0 {
			maxAge = DefaultStreamMaxAge
		}
		age := fmt.Sprintf("limits; MaxAge backstop %dd; duplicate window %s; file storage", maxAge/(24*time.Hour), DuplicateWindow)
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", st.Name, strings.Join(st.Subjects, "`, `"), age, st.Doc)
	}
	b.WriteString("\n### Key-value buckets\n\n")
	b.WriteString("| bucket | keys | history | writer | readers | meaning |\n|---|---|---|---|---|---|\n")
	for _, kv := range Buckets() {
		fmt.Fprintf(&b, "| `%s` | %s | %d | %s | %s | %s |\n", kv.Name, kv.Keys, kv.History, kv.Writer, strings.Join(kv.Readers, ", "), kv.Doc)
	}
	return b.String()
}
