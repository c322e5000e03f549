package agentrunner

import (
	"bufio"
	"bytes"
	"os/exec"
	"testing"

	"github.com/symphony-oss/symphony/testkit/fakeagent"
)

func BenchmarkParseClaudeLine(b *testing.B) {
	bin := fakeagent.Build(b)
	cmd := exec.Command(bin, "-p", "--output-format", "stream-json", "--verbose")
	cmd.Stdin = bytes.NewReader([]byte("go"))
	cmd.Env = []string{"FAKEAGENT_EVENTS=300", "FAKEAGENT_SIZE=256"}
	out, err := cmd.Output()
	if err != nil {
		b.Fatal(err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		if _, err := parseClaudeLine(lines[n%len(lines)]); err != nil {
			b.Fatal(err)
		}
		n++
	}
}
