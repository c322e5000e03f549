package bus

import (
	"os"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// BenchmarkOpenListening is BenchmarkOpen with the listener on: the
// listener account and its imports are set up at every start.
func BenchmarkOpenListening(b *testing.B) {
	for b.Loop() {
		bus, err := Open(b.Context(), Options{DataDir: b.TempDir(), Listen: "127.0.0.1:0"})
		if err != nil {
			b.Fatal(err)
		}
		if err := bus.Close(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListenerAPIRequest measures a read token's JetStream API
// request over TCP ($JS.API.STREAM.INFO of RUNS): through the listener
// account's service import.
func BenchmarkListenerAPIRequest(b *testing.B) {
	_, nc := benchListener(b)
	for b.Loop() {
		if _, err := nc.Request("$JS.API.STREAM.INFO."+StreamRuns, nil, testTimeout); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListenerConsumerCreate measures a read token's ephemeral
// consumer creation and deletion over TCP: with the listener account, the
// creation passes the bus's check (one more hop on the in-process
// connection).
func BenchmarkListenerConsumerCreate(b *testing.B) {
	_, nc := benchListener(b)
	body := []byte(`{"stream_name":"` + StreamRuns + `","config":{"ack_policy":"none","inactive_threshold":5000000000}}`)
	for b.Loop() {
		if _, err := nc.Request("$JS.API.CONSUMER.CREATE."+StreamRuns+".bench", body, testTimeout); err != nil {
			b.Fatal(err)
		}
		if _, err := nc.Request("$JS.API.CONSUMER.DELETE."+StreamRuns+".bench", nil, testTimeout); err != nil {
			b.Fatal(err)
		}
	}
}

func benchListener(b *testing.B) (*Bus, *nats.Conn) {
	b.Helper()
	bus, err := Open(b.Context(), Options{DataDir: b.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bus.Close(b.Context()) })
	tok, err := os.ReadFile(bus.TokenFile())
	if err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(bus.ListenURL(), nats.Token(strings.TrimSpace(string(tok))))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	return bus, nc
}
