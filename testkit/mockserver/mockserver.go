// Package mockserver is what the model mocks (mockanthropic, mockopenai)
// share: a loopback HTTP server and a scripted conversation in which every
// request is recorded and every model call takes the next scripted step.
// The mocks differ in their wire formats, not in how a script is played or
// waited on, so that part lives here once.
package mockserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Options say what a mock's requests and steps are.
type Options[R, S any] struct {
	// Name prefixes the mock's errors ("mockopenai").
	Name string
	// IsCall reports whether a request is a model call, which takes a
	// step; other requests are only recorded.
	IsCall func(R) bool
	// Fallback is the step of a model call after the script ran out.
	Fallback func() S
	// SetStep stores in a recorded request the index of its scripted
	// step (-1: the fallback, a responder's answer or no call).
	SetStep func(r *R, idx int)
}

// Script is a running mock server. It is safe for concurrent use.
type Script[R, S any] struct {
	opt   Options[R, S]
	srv   *http.Server
	ln    net.Listener
	url   string
	done  chan struct{}
	close sync.Once
	wg    sync.WaitGroup

	mu sync.Mutex
	// respond, when set, chooses every answer instead of the script.
	respond  func(R) S
	steps    []S
	next     int
	requests []R
	changed  chan struct{} // closed and replaced on every recorded request
}

// Listen takes a random 127.0.0.1 port for a mock with steps as its
// script; Serve starts answering. The two are apart so that the mock can
// finish building itself (its handler reads it) before the first request.
// It panics if it cannot listen (as httptest.NewServer does).
func Listen[R, S any](opt Options[R, S], steps ...S) *Script[R, S] {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("%s: listen: %v", opt.Name, err))
	}
	return &Script[R, S]{
		opt:     opt,
		ln:      ln,
		url:     "http://" + ln.Addr().String(),
		done:    make(chan struct{}),
		steps:   append([]S(nil), steps...),
		changed: make(chan struct{}),
		srv:     &http.Server{ReadHeaderTimeout: 10 * time.Second},
	}
}

// Serve answers with h until Close. Call it once.
func (s *Script[R, S]) Serve(h http.HandlerFunc) {
	s.srv.Handler = h
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.srv.Serve(s.ln)
	}()
}

// Respond makes respond choose every model answer from then on, instead
// of the script. Calls are serialized.
func (s *Script[R, S]) Respond(respond func(R) S) {
	s.mu.Lock()
	s.respond = respond
	s.mu.Unlock()
}

// URL is the base URL, e.g. "http://127.0.0.1:41234".
func (s *Script[R, S]) URL() string { return s.url }

// Done is closed when the server is closing: pending delays and gates
// give up.
func (s *Script[R, S]) Done() <-chan struct{} { return s.done }

// Close stops the server: pending delays and gates are abandoned and open
// connections are closed. It is safe to call more than once.
func (s *Script[R, S]) Close() {
	s.close.Do(func() {
		close(s.done)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			_ = s.srv.Close()
		}
		_ = s.ln.Close() // not served yet: Shutdown does not know it
		s.wg.Wait()
	})
}

// Append adds steps to the end of the script (e.g. before the next turn).
func (s *Script[R, S]) Append(steps ...S) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps = append(s.steps, steps...)
}

// Steps returns the script steps answered so far, in order.
func (s *Script[R, S]) Steps() []S {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]S(nil), s.steps[:s.next]...)
}

// Requests returns every request received so far, in arrival order.
func (s *Script[R, S]) Requests() []R {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]R(nil), s.requests...)
}

// Calls returns the model calls received so far.
func (s *Script[R, S]) Calls() []R {
	var out []R
	for _, r := range s.Requests() {
		if s.opt.IsCall(r) {
			out = append(out, r)
		}
	}
	return out
}

// WaitCalls blocks until at least n model calls have arrived (answered or
// not), ctx ends, or the server closes.
func (s *Script[R, S]) WaitCalls(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		count := 0
		for _, r := range s.requests {
			if s.opt.IsCall(r) {
				count++
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if count >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%s: %d of %d model calls: %w", s.opt.Name, count, n, ctx.Err())
		case <-s.done:
			return fmt.Errorf("%s: %w", s.opt.Name, ErrClosed)
		}
	}
}

// ErrClosed is returned by waits cut short by Close.
var ErrClosed = errors.New("server closed")

// Record appends r and returns the step it gets: a model call takes the
// responder's answer, else the next scripted step, else the fallback.
func (s *Script[R, S]) Record(r R) S {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := -1
	var st S
	if call := s.opt.IsCall(r); call && s.respond != nil {
		st = s.respond(r)
	} else if call {
		if s.next < len(s.steps) {
			idx = s.next
			st = s.steps[idx]
			s.next++
		} else {
			st = s.opt.Fallback()
		}
	}
	if s.opt.SetStep != nil {
		s.opt.SetStep(&r, idx)
	}
	s.requests = append(s.requests, r)
	close(s.changed)
	s.changed = make(chan struct{})
	return st
}

// Split cuts text into at most n non-empty pieces on rune boundaries, so
// that a client has to reassemble deltas as with the real APIs.
func Split(text string, n int) []string {
	if text == "" {
		return nil
	}
	r := []rune(text)
	size := (len(r) + n - 1) / n
	var out []string
	for len(r) > 0 {
		k := min(size, len(r))
		out = append(out, string(r[:k]))
		r = r[k:]
	}
	return out
}

// Wait holds an answer for delay, then until gate is closed (nil: no
// gate); false means give up: the client went away or the server is
// closing.
func (s *Script[R, S]) Wait(ctx context.Context, delay time.Duration, gate <-chan struct{}) bool {
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		case <-s.done:
			return false
		}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return false
		case <-s.done:
			return false
		}
	}
	return true
}
