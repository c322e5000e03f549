package ui

import (
	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// The reference implementation names a running issue's latest event in
// the vocabulary of its codex app-server client (session_started,
// notification, turn_completed, turn_failed, …), and scripts that read
// its JSON API test those names. The API gives that name in last_event
// (and recent_events[].event) and Symphony's own, finer kind beside it in
// last_event_kind. These are the names used.
const (
	refSessionStarted     = "session_started"
	refNotification       = "notification"
	refTurnCompleted      = "turn_completed"
	refTurnFailed         = "turn_failed"
	refTurnCancelled      = "turn_cancelled"
	refTurnEndedWithError = "turn_ended_with_error"
	refOtherMessage       = "other_message"
	refMalformed          = "malformed"
	refToolCallCompleted  = "tool_call_completed"
	refToolCallFailed     = "tool_call_failed"
)

// refTurnEvent names an agent event in the reference's vocabulary.
func refTurnEvent(ev bus.TurnEvent) string {
	switch ev.Kind {
	case bus.TurnInit:
		return refSessionStarted
	case bus.TurnOutcome:
		if ev.Result != nil && ev.Result.IsError {
			return refTurnFailed
		}
		return refTurnCompleted
	case bus.TurnOther:
		return refOtherMessage
	case bus.TurnParseError:
		return refMalformed
	case bus.TurnTrackerTool:
		if ev.TrackerTool != nil && !ev.TrackerTool.OK {
			return refToolCallFailed
		}
		return refToolCallCompleted
	}
	// The agent's text, thinking, tools, retries, rate limits, status and
	// stderr: what the reference reports as a notification.
	return refNotification
}

// refRunEvent names a run lifecycle event in the reference's vocabulary:
// the session's start, a turn's end, a run that ended other than well
// (its turn ended with an error, or it was cancelled); the rest are
// notifications.
func refRunEvent(ev bus.RunEvent) string {
	switch {
	case ev.Event == bus.RunSessionStarted:
		return refSessionStarted
	case ev.Event == bus.RunTurnFinished && (ev.Status == "" || ev.Status == bus.RunSucceeded):
		return refTurnCompleted
	case ev.Event == bus.RunTurnFinished:
		return refTurnFailed
	case ev.Event != bus.RunFinished || ev.Status == "" || ev.Status == bus.RunSucceeded:
		return refNotification
	case ev.Status == bus.RunCanceled:
		return refTurnCancelled
	}
	return refTurnEndedWithError
}

// refStoredEvent names a stored event of a run in the reference's
// vocabulary (recent_events[].event).
func refStoredEvent(ev runlog.Event) string {
	switch {
	case ev.Turn != nil:
		return refTurnEvent(*ev.Turn)
	case ev.Run != nil:
		return refRunEvent(*ev.Run)
	}
	return refNotification // a hook's start or end
}
