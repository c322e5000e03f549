package bus

import (
	"errors"
	"fmt"

	"github.com/symphony-oss/symphony/bus/safeid"
)

// The wire error codes: what a responder's failure was, carried to the
// asker in the Symphony-Error-Code header and read back as RemoteError.Code.
// They are declared here, once, so an asker tests a code by name and a
// responder cannot misspell one; the tracker's failure classes
// (TrackerConfigError…) are codes too.
const (
	// CodeError is the code of a failure that has none of its own.
	CodeError = "error"
	// CodeBadRequest: the request could not be decoded or is not allowed.
	CodeBadRequest = "bad_request"
	// CodeEncode: the reply could not be encoded.
	CodeEncode = "encode"
	// CodeReplyFailed: the reply could not be sent (over the server's
	// maximum payload, say).
	CodeReplyFailed = "reply_failed"
	// CodeNoConfig: no workflow configuration has been loaded yet.
	CodeNoConfig = "no_config"
	// CodeUnsafeIdentifier: an identifier failed the identifier rule.
	CodeUnsafeIdentifier = safeid.Code
	// CodeOutsideRoot: a workspace path would leave the workspace root.
	CodeOutsideRoot = "outside_root"
	// CodeRootInUse: another process holds the workspace root.
	CodeRootInUse = "workspace_root_in_use"
	// CodeNotADirectory: something other than a directory is at a
	// workspace path.
	CodeNotADirectory = "not_a_directory"
	// CodeNoWorkspace: a hook was asked for where no workspace exists.
	CodeNoWorkspace = "no_workspace"
	// CodeHookFailed and CodeHookTimedOut: a hook exited non-zero or ran
	// past its timeout.
	CodeHookFailed   = "hook_failed"
	CodeHookTimedOut = "hook_timed_out"
	// CodeAlreadyRunning: the issue already has a run in this runner.
	CodeAlreadyRunning = "already_running"
	// CodeDuplicateRun: a run with this id exists.
	CodeDuplicateRun = "duplicate_run"
	// CodeNotFound: what the request names does not exist (here).
	CodeNotFound = "not_found"
)

// CodedError is a failure with a wire code: a handler returns one (Errorf,
// WithCode) and the asker gets the code in its RemoteError.
type CodedError struct {
	code string
	err  error
}

// Errorf makes a CodedError from a format, as fmt.Errorf does (%w wraps).
func Errorf(code, format string, args ...any) error {
	return &CodedError{code: code, err: fmt.Errorf(format, args...)}
}

// WithCode gives err a wire code; nil stays nil.
func WithCode(code string, err error) error {
	if err == nil {
		return nil
	}
	return &CodedError{code: code, err: err}
}

func (e *CodedError) Error() string { return e.err.Error() }
func (e *CodedError) Unwrap() error { return e.err }

// Code is the wire code.
func (e *CodedError) Code() string { return e.code }

// CodeOf is the wire code of err: its own (an error in its chain with a
// Code() string method) or CodeError.
func CodeOf(err error) string {
	var c interface{ Code() string }
	if errors.As(err, &c) && c.Code() != "" {
		return c.Code()
	}
	return CodeError
}
