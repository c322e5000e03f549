package bus

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// The notifier's own state (KV symphony_notify/status): where it is in
// the NOTIFY stream and which notification ids it has handled, so that
// each occurrence runs notify.command once across restarts, and the counts
// the dashboard shows. It is one value, written after each step, so the
// cursor and the record of what was handled never disagree.

// NotifyStatus is the value of KV symphony_notify/status. Only the
// notifier writes it.
type NotifyStatus struct {
	// Seq is the NOTIFY stream sequence of the last notification handled;
	// the notifier resumes after it, so one stored while it was down is
	// delivered when it comes back, and none handled is read again.
	Seq uint64 `json:"seq"`
	// Delivered counts commands that exited 0; Failed those that exited
	// non-zero, timed out or could not start; Skipped notifications
	// handled while no notify.command was configured; Duplicates
	// notifications whose id was handled before (a publisher re-handling
	// an event after a restart); Invalid stored messages that could not
	// be decoded or had no id. All count since the bucket was created.
	Delivered  int64 `json:"delivered"`
	Failed     int64 `json:"failed"`
	Skipped    int64 `json:"skipped"`
	Duplicates int64 `json:"duplicates"`
	Invalid    int64 `json:"invalid"`
	// Running is the notification whose command was started and has not
	// finished. Found at a start, it means the previous process ended
	// while the command ran: the command runs again (at least once), up
	// to MaxNotifyAttempts starts in all.
	Running *NotifyHandled `json:"running,omitempty"`
	// Handled is the ids handled, oldest first: at most MaxNotifyHandled,
	// none handled longer than NotifyKeepHandled ago.
	Handled []NotifyHandled `json:"handled,omitempty"`
	// LastFailure is the latest failed command, for the dashboard.
	LastFailure *NotifyFailure `json:"last_failure,omitempty"`
	Updated     time.Time      `json:"updated"`
}

// NotifyHandled is the record of one handled notification.
type NotifyHandled struct {
	// Digest is NotifyDigest of the notification's id.
	Digest string      `json:"digest"`
	Event  NotifyEvent `json:"event"`
	// Seq is the NOTIFY stream sequence of the message handled.
	Seq      uint64        `json:"seq"`
	Outcome  NotifyOutcome `json:"outcome"`
	Attempts int           `json:"attempts,omitempty"`
	At       time.Time     `json:"at"`
}

// NotifyFailure is one failed notify.command.
type NotifyFailure struct {
	ID         string      `json:"id"`
	Event      NotifyEvent `json:"event"`
	IssueID    string      `json:"issue_id,omitempty"`
	Identifier string      `json:"issue_identifier,omitempty"`
	// Error says how it failed (exit status and last line of output,
	// timeout, spawn error), at most MaxNotifyError bytes.
	Error string    `json:"error"`
	At    time.Time `json:"at"`
}

// NotifyDrops is the value of KV symphony_state/notify_dropped: the
// notifications the scheduler made but never stored in the NOTIFY stream
// (its bounded queue was full, the publish failed, or it stopped before
// publishing them), so no notifier could deliver them. The scheduler
// writes it when it drops one, adding to the stored count: it counts
// across restarts.
type NotifyDrops struct {
	Dropped int64 `json:"dropped"`
	// At is when the latest drop was recorded.
	At time.Time `json:"at"`
}

// MaxNotifyError bounds NotifyFailure.Error.
const MaxNotifyError = 1024

// NotifyOutcome is what became of one notification.
type NotifyOutcome string

const (
	// NotifyRunning: the command was started and has not finished.
	NotifyRunning   NotifyOutcome = "running"
	NotifyDelivered NotifyOutcome = "delivered"
	NotifyFailed    NotifyOutcome = "failed"
	NotifySkipped   NotifyOutcome = "skipped"
)

// MaxNotifyAttempts bounds how often one notification's command is
// started when the process keeps ending while it runs (a command that
// kills Symphony must not do so at every restart).
const MaxNotifyAttempts = 3

// NotifyKeepHandled is how long the notifier remembers a handled id: a
// notification published again within it (a publisher re-handling an
// event after a restart, hours later) is not delivered again.
// MaxNotifyHandled bounds the record by count too (about 150 bytes each).
const (
	NotifyKeepHandled = 30 * 24 * time.Hour
	MaxNotifyHandled  = 4096
)

// NotifyDigest is how NotifyStatus.Handled names a notification id: a
// hex SHA-256 prefix (128 bits), as an id may be long and hold any
// character.
func NotifyDigest(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:16])
}
