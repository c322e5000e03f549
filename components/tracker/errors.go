package tracker

import (
	"errors"
	"fmt"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// Error is a classed tracker failure. Class is one of the bus.Tracker*
// classes; it travels to the asker as the RemoteError code.
type Error struct {
	Class   string
	Message string
	// RetryAfter is set for rate_limited: how long to wait.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("%s: %s (retry after %s)", e.Class, e.Message, e.RetryAfter.Round(time.Second))
	}
	return e.Class + ": " + e.Message
}

// Code is the class (see bus.RemoteError).
func (e *Error) Code() string { return e.Class }

func (e *Error) Unwrap() error { return e.Err }

func errorf(class, format string, args ...any) *Error {
	return &Error{Class: class, Message: fmt.Sprintf(format, args...)}
}

// classOf returns the class of err, request_error for an unclassed one.
func classOf(err error) (string, time.Duration) {
	var te *Error
	if errors.As(err, &te) {
		return te.Class, te.RetryAfter
	}
	return bus.TrackerRequestError, 0
}
