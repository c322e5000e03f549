package bus

import (
	"context"
	"testing"
)

// BenchmarkOpen measures starting the kernel (server, JetStream, streams,
// buckets) and closing it.
func BenchmarkOpen(b *testing.B) {
	for b.Loop() {
		bus, err := Open(context.Background(), Options{DataDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		if err := bus.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishDurable measures acknowledged, typed, de-duplicated
// publishes of a run event to the RUNS stream.
func BenchmarkPublishDurable(b *testing.B) { benchPublishDurable(b, Options{}) }

// BenchmarkPublishDurableListening is BenchmarkPublishDurable with the NATS
// listener on: the in-process connection authenticated with its token
// (once, at connect) and the listener's permissions in force for others.
// The two are within noise: Symphony's own role has no permissions to check.
func BenchmarkPublishDurableListening(b *testing.B) {
	benchPublishDurable(b, Options{Listen: "127.0.0.1:0", AllowControls: true})
}

func benchPublishDurable(b *testing.B, opts Options) {
	opts.DataDir = b.TempDir()
	bus, err := Open(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close(context.Background())
	ev := RunEvent{RunID: "r", Event: RunTurnStarted, Issue: IssueRef{ID: "i", Identifier: "ABC-1"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PublishDurable(context.Background(), bus, RunEvents, ev, "", "r", "turn_started"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishSubscribe measures a typed core publish received by a
// typed subscriber.
func BenchmarkPublishSubscribe(b *testing.B) {
	bus, err := Open(context.Background(), Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close(context.Background())
	sub, err := Subscribe(b.Context(), bus, ComponentEvents)
	if err != nil {
		b.Fatal(err)
	}
	ev := ComponentEvent{Component: "x", State: ComponentStarted}
	b.ReportAllocs()
	for b.Loop() {
		if err := Publish(bus, ComponentEvents, ev, "x"); err != nil {
			b.Fatal(err)
		}
		<-sub.C()
	}
}
