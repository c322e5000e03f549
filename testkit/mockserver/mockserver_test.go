package mockserver

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

type req struct {
	call bool
	step int
}

func start(t *testing.T, steps ...string) *Script[req, string] {
	t.Helper()
	s := Listen(Options[req, string]{
		Name:     "mocktest",
		IsCall:   func(r req) bool { return r.call },
		Fallback: func() string { return "done" },
		SetStep:  func(r *req, idx int) { r.step = idx },
	}, steps...)
	s.Serve(func(w http.ResponseWriter, _ *http.Request) {})
	t.Cleanup(s.Close)
	return s
}

func TestScriptPlaysStepsThenFallsBack(t *testing.T) {
	s := start(t, "one", "two")
	var got []string
	for _, r := range []req{{call: true}, {}, {call: true}, {call: true}} {
		got = append(got, s.Record(r))
	}
	if strings.Join(got, ",") != "one,,two,done" {
		t.Fatalf("answers %q, want one,,two,done", got)
	}
	var steps []int
	for _, r := range s.Requests() {
		steps = append(steps, r.step)
	}
	if len(steps) != 4 || steps[0] != 0 || steps[1] != -1 || steps[2] != 1 || steps[3] != -1 {
		t.Fatalf("recorded steps %v, want [0 -1 1 -1]", steps)
	}
	if n := len(s.Calls()); n != 3 {
		t.Fatalf("%d calls, want 3", n)
	}
	if a := s.Steps(); len(a) != 2 {
		t.Fatalf("answered steps %q, want both", a)
	}
	s.Respond(func(req) string { return "chosen" })
	if got := s.Record(req{call: true}); got != "chosen" {
		t.Fatalf("responder's answer %q", got)
	}
}

func TestWaitCallsWakesOnRecordAndGivesUpOnClose(t *testing.T) {
	s := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.WaitCalls(ctx, 2) }()
	s.Record(req{call: true})
	s.Record(req{call: true})
	if err := <-errc; err != nil {
		t.Fatalf("WaitCalls: %v", err)
	}
	go func() { errc <- s.WaitCalls(ctx, 3) }()
	s.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitCalls after Close: %v, want ErrClosed", err)
	}
	if s.Wait(ctx, time.Hour, nil) {
		t.Fatal("Wait on a closed server held on")
	}
}

func TestSplitKeepsRunes(t *testing.T) {
	parts := Split("héllo wörld", 3)
	if len(parts) != 3 || strings.Join(parts, "") != "héllo wörld" {
		t.Fatalf("Split: %q", parts)
	}
	if Split("", 3) != nil {
		t.Fatal("Split of nothing is not nothing")
	}
}
