package bus

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestFollowFromASequence: Follow hands on the stored notifications from
// the sequence asked, then new ones as they are stored, decoded; a
// message that cannot be decoded comes with its error and its sequence,
// so a reader keeping a cursor moves past it.
func TestFollowFromASequence(t *testing.T) {
	b := openTest(t, Options{})
	for _, id := range []string{"a", "b"} {
		if _, err := PublishDurable(t.Context(), b, Notifications, Notification{ID: id, Event: NotifyRunBlocked}, id, string(NotifyRunBlocked)); err != nil {
			t.Fatal(err)
		}
	}
	type got struct {
		msg Message[Notification]
		err error
	}
	c := make(chan got, 8)
	stop, err := Follow(t.Context(), b, Notifications, 2, func(m Message[Notification], err error) { c <- got{m, err} })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	next := func() got {
		t.Helper()
		select {
		case g := <-c:
			return g
		case <-time.After(testTimeout):
			t.Fatal("nothing followed")
		}
		return got{}
	}
	if g := next(); g.err != nil || g.msg.Seq != 2 || g.msg.Data.ID != "b" {
		t.Errorf("first: %+v %v", g.msg, g.err)
	}
	// A message of another type on the subject: an error, with its place.
	if _, err := b.js.PublishMsg(t.Context(), &nats.Msg{Subject: "symphony.notify.run_blocked", Data: []byte(`{"id":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	if g := next(); g.err == nil || g.msg.Seq != 3 {
		t.Errorf("undecodable: %+v %v", g.msg, g.err)
	}
	if _, err := PublishDurable(t.Context(), b, Notifications, Notification{ID: "c", Event: NotifyDailyCap}, "c", string(NotifyDailyCap)); err != nil {
		t.Fatal(err)
	}
	if g := next(); g.err != nil || g.msg.Seq != 4 || g.msg.Data.ID != "c" || g.msg.Subject != "symphony.notify.daily_cap_reached" {
		t.Errorf("new: %+v %v", g.msg, g.err)
	}
	if _, err := Follow(t.Context(), b, ComponentEvents, 0, func(Message[ComponentEvent], error) {}); err == nil {
		t.Error("following a topic that is not stored should fail")
	}
}
