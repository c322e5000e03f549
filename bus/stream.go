package bus

import (
	"sync"
	"sync/atomic"
)

// Stream is the one shape of everything that arrives over time: messages of
// a subscription, the values of a watched key or key family, the events of a
// followed run. Values come on C, in order, until the stream ends — because
// its context ended, its client was closed, Close was called, or its source
// failed — and then C is closed, Done is closed and Err says why it ended on
// its own (nil when it was stopped).
//
// Finite reads of what is stored (History, a run's timeline) are iterators
// instead: they end when they have caught up, and a range loop is their
// natural reader. Everything live is a Stream, so a component's loop selects
// over C channels and nothing else.
type Stream[T any] struct {
	c    chan T
	done chan struct{}
	stop func()

	errOnce sync.Once
	err     error

	invalid atomic.Int64
	dropped atomic.Int64
}

// newStream makes a stream whose values come on a channel of the given
// buffer. stop ends its source early; the source closes the stream with end.
func newStream[T any](buffer int, stop func()) *Stream[T] {
	return &Stream[T]{c: make(chan T, buffer), done: make(chan struct{}), stop: stop}
}

// NewStream makes a Stream for a package above the kernel that produces
// values over time (a followed run): stop ends the source early; the
// producer sends on the returned send function and calls end exactly once,
// after its last send, with the error that ended it (nil when stopped).
// send returns false once the stream is stopping or has ended (the
// producer should stop); sends may come from several goroutines as long
// as end waits for them.
func NewStream[T any](buffer int, stop func()) (s *Stream[T], send func(T) bool, end func(error)) {
	s = newStream[T](buffer, stop)
	stopping := make(chan struct{})
	var once sync.Once
	halt := func() { once.Do(func() { close(stopping) }) }
	s.stop = func() {
		halt()
		if stop != nil {
			stop()
		}
	}
	send = func(v T) bool {
		select {
		case <-stopping:
			return false
		default:
		}
		select {
		case s.c <- v:
			return true
		case <-stopping:
			return false
		}
	}
	end = func(err error) {
		halt()
		s.end(err)
	}
	return s, send, end
}

// end closes the stream with err (kept only for an end of its own).
func (s *Stream[T]) end(err error) {
	s.errOnce.Do(func() {
		s.err = err
		close(s.c)
		close(s.done)
	})
}

// C is the channel of values. It is closed when the stream has ended.
func (s *Stream[T]) C() <-chan T { return s.c }

// Done is closed when the stream has ended and C is closed.
func (s *Stream[T]) Done() <-chan struct{} { return s.done }

// Err is why the stream ended on its own (its source failed, the
// connection closed); nil while it runs and when it was stopped.
func (s *Stream[T]) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close stops the stream and waits until it has ended. It is idempotent;
// values not yet read are discarded.
func (s *Stream[T]) Close() {
	if s.stop != nil {
		s.stop()
	}
	<-s.done
}

// Overflows counts the times the pending buffer overflowed and the server
// dropped messages for this subscriber (core NATS has no back-pressure: use a
// stream for what must not be lost).
func (s *Stream[T]) Overflows() int64 { return s.dropped.Load() }

// Invalid counts messages that could not be decoded (wrong type header,
// newer schema, bad JSON). They are logged and skipped.
func (s *Stream[T]) Invalid() int64 { return s.invalid.Load() }

// Subscription is the stream of a topic's messages (Subscribe).
type Subscription[T any] = Stream[Message[T]]
