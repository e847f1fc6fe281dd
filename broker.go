package sse

import (
	"context"
	"errors"
)

// ErrHistoryGap is matched by the error [Broker.Replay] returns when the
// events after the given id cannot all be replayed: the id is older than the
// history kept, comes from another epoch (before a restart), or is unknown.
// The Hub turns it into a reset event. A Broker returns it as a
// [*HistoryGapError], which tells why.
var ErrHistoryGap = errors.New("sse: events after the last event ID are no longer available")

// GapReason says why a Broker cannot replay the events after an id. It is
// the "reason" of a reset event's data (see [ResetData]), a wire format:
// its values never change.
type GapReason string

// Reasons of a [HistoryGapError].
const (
	// GapExpired: the id is one the Broker knows, but events after it are
	// no longer kept (HistoryAge, History, a trimmed or deleted stream).
	GapExpired GapReason = "expired"
	// GapUnknown: the Broker does not know the id: it is from another
	// epoch (before a restart), malformed, from the future, an id set by
	// the publisher that is no longer kept or that several of the topics
	// use, or the Broker gave no reason.
	GapUnknown GapReason = "unknown"
)

// HistoryGapError is the error of a Broker that cannot replay the events
// after an id. It matches [ErrHistoryGap] with errors.Is.
type HistoryGapError struct {
	Reason GapReason
	// Err is what the Broker found, for logs; it may be nil.
	Err error
}

func (e *HistoryGapError) Error() string {
	s := ErrHistoryGap.Error() + " (" + string(e.Reason) + ")"
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is reports whether target is ErrHistoryGap.
func (e *HistoryGapError) Is(target error) bool { return target == ErrHistoryGap }

// Unwrap returns Err.
func (e *HistoryGapError) Unwrap() error { return e.Err }

// Entry is one stored event and the topic it was published on; or, from a
// feed, with Gap set, the news that the feed lost events.
type Entry struct {
	Topic string
	Message
	// Gap, when not nil, makes the entry a signal and not an event: the
	// feed of Topic cannot deliver every event after the last one it
	// delivered (the store trimmed them before the feed read them, or the
	// feed lost its place in some other way). It is or wraps
	// [ErrHistoryGap], typically a [*HistoryGapError] that tells why, and
	// the Message is empty. A feed sends it at most once, as its last
	// call of deliver: it then stops. The Hub cuts the topic's
	// subscribers off ([ErrEvicted]), so that each reconnects and either
	// replays what it missed or, when that is gone too, receives the reset
	// event: a Hub never skips events silently. Gap is nil in the entries
	// of Replay and Recent.
	Gap error
}

// Broker stores the events of a Hub's topics and carries them to every node
// that serves those topics. [MemoryBroker] is the in-process one; others can
// put the history in Redis, NATS or a database. Package brokertest tests
// that a Broker keeps this contract.
//
// A Broker must be safe for concurrent use. Ids are opaque to the Hub; the
// Broker alone knows what order they stand in. The Hub never holds its own
// lock across a call to its Broker, so a slow store delays only the
// subscriber that waits on it.
//
// One Last-Event-ID stands for a client's place in all of its topics. With
// a Broker whose feeds of different topics are not delivered in one order
// (one independent reader per topic), a client of several topics can
// resume after an event of one topic that a feed of another has not yet
// delivered, and miss events there: serve one topic per stream with such a
// Broker. The Redis Broker reads all of a node's topics at once, in one
// order.
type Broker interface {
	// Publish stores m on topic and returns the id it is known by: m.ID
	// when set (a Broker that cannot keep ids of its own must refuse them),
	// otherwise one the Broker assigns. Every feed of the topic then
	// delivers it, and Replay returns it, with all of its fields, Retry
	// and Comment included (a Broker that cannot store one must refuse a
	// message that sets it). A message with an invalid field (see
	// [Message]) is refused with an error wrapping [ErrInvalidField], and
	// nothing is stored.
	Publish(ctx context.Context, topic string, m Message) (id string, err error)

	// Subscribe starts a live feed of topic: deliver is called with every
	// event published after the call, in publish order, one call at a time,
	// until ctx ends. It returns the position where the feed starts: the id
	// of the newest event stored, or for a topic without one an id that
	// Replay accepts as "now". Replay up to it and the feed after it
	// together hold every event once. Nothing published after ctx ended
	// is delivered.
	//
	// A feed that finds it cannot deliver every event after the last one
	// it delivered (a store that trimmed them while the feed lagged, or
	// lost them in a restart) must not skip them: it calls deliver once
	// with an Entry whose Gap is set, and stops (see [Entry.Gap]). A feed
	// that cannot read for a while (the store is down) keeps its place
	// and resumes without a gap when it can.
	Subscribe(ctx context.Context, topic string, deliver func(Entry)) (newest string, err error)

	// Replay returns the stored events of topics that came after the event
	// with id after, oldest first, and heads[i], the position of topics[i]
	// as read (the id of its newest event, or what Subscribe returns for a
	// topic without events). When some events are gone it returns a
	// [*HistoryGapError], which tells the Hub the reason for the reset
	// event (an error that only wraps ErrHistoryGap gives GapUnknown).
	//
	// The Hub skips the live events of a topic up to its head when the
	// head differs from where the topic's feed stands: that is how a feed
	// that lags behind the store (another node published) never delivers
	// an event twice. A head must therefore be an id the feed delivers, or
	// the feed's own position. A feed that can no longer deliver it (it
	// was trimmed before the feed read it) sends a Gap, which ends the
	// wait: the Hub cuts the subscriber off rather than skip its events
	// forever.
	Replay(ctx context.Context, topics []string, after string) (entries []Entry, heads []string, err error)

	// Newest returns the newest of ids, where ids[i] is a position of
	// topics[i] (returned by Subscribe or Replay, or the id of an event a
	// feed delivered), as one id that Replay of topics takes as a
	// Last-Event-ID: the events after it are those after every ids[i].
	// The Hub asks it for the position and the reset event of a
	// subscriber of several topics.
	Newest(ctx context.Context, topics, ids []string) (string, error)

	// Close releases the Broker's resources and stops the feeds; later
	// calls of Publish and Subscribe fail.
	Close() error
}
