package bus

import (
	"bytes"
	"errors"
	"fmt"
)

// Agent events are stored several to a message when the agent writes them
// faster than they are stored one by one. A flooding agent leaves many
// lines in its pipe between two reads; storing each as its own JetStream
// message cost a store write, a consumer delivery and an acknowledgement
// per event, which capped the whole pipeline far below what the store can
// take. The runner stores everything it read in one go as one message
// (runlog.Writer.AppendTurn): a JSON array of the events, schema 2 of
// TurnEvents, with the HeaderEvents header. An event written on its own is
// stored as before, a bare object. Readers (History here, the run history
// readers of package runlog through Topic.EachPayload) hand on every event
// of a message separately.
const (
	// HeaderEvents says how many events a stored message of agent events
	// holds, when it holds more than one.
	HeaderEvents = "Symphony-Events"
	// turnBatchSchema is the Symphony-Schema of a message holding an array
	// of agent events.
	turnBatchSchema = 2
	// maxBatchDepth bounds the nesting splitBatch follows.
	maxBatchDepth = 1000
)

// errNotBatch says a payload is not a JSON array.
var errNotBatch = errors.New("not a JSON array")

// isBatch reports whether a stored payload is an array of events: its
// first byte that is not white space is '['.
func isBatch(data []byte) bool {
	i := skipSpace(data, 0)
	return i < len(data) && data[i] == '['
}

// splitBatch returns the elements of the JSON array data as sub-slices of
// it (no copies), white space trimmed. It follows only the structure
// (strings and their escapes, nesting, commas): each element is checked in
// full by whoever decodes it. On malformed input it returns the elements
// complete before the fault with an error saying where it is, so a reader
// can keep what is readable.
func splitBatch(data []byte) ([][]byte, error) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '[' {
		return nil, errNotBatch
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		if j := skipSpace(data, i+1); j != len(data) {
			return nil, fmt.Errorf("batch: unexpected %q after the array", data[j])
		}
		return nil, nil
	}
	var (
		out   [][]byte
		stack []byte // the closing brackets awaited inside an element
	)
	for {
		i = skipSpace(data, i)
		start := i
		inString := false
	element:
		for ; i < len(data); i++ {
			c := data[i]
			if inString {
				switch c {
				case '\\':
					i++ // the escaped byte cannot end the string
				case '"':
					inString = false
				}
				continue
			}
			switch c {
			case '"':
				inString = true
			case '{', '[':
				if len(stack) >= maxBatchDepth {
					return out, fmt.Errorf("batch: event %d nests deeper than %d", len(out)+1, maxBatchDepth)
				}
				if c == '{' {
					stack = append(stack, '}')
				} else {
					stack = append(stack, ']')
				}
			case '}', ']':
				if len(stack) == 0 {
					if c == '}' {
						return out, fmt.Errorf("batch: unexpected '}' at byte %d", i)
					}
					break element // the array's end
				}
				if stack[len(stack)-1] != c {
					return out, fmt.Errorf("batch: mismatched %q at byte %d", c, i)
				}
				stack = stack[:len(stack)-1]
			case ',':
				if len(stack) == 0 {
					break element
				}
			}
		}
		if i >= len(data) {
			return out, fmt.Errorf("batch: unterminated after %d events", len(out))
		}
		elem := bytes.TrimRight(data[start:i], " \t\r\n")
		if len(elem) == 0 {
			return out, fmt.Errorf("batch: empty event %d at byte %d", len(out)+1, start)
		}
		out = append(out, elem)
		if data[i] == ']' {
			if j := skipSpace(data, i+1); j != len(data) {
				return out, fmt.Errorf("batch: unexpected %q after the array", data[j])
			}
			return out, nil
		}
		i++ // past the comma
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n') {
		i++
	}
	return i
}

// eachPayload calls fn with every payload a stored message of spec holds:
// its body, or, for a topic whose messages may hold several (Spec.Batches)
// and a body that is an array, each element with its index. A malformed
// array yields the elements before the fault and an error. Whether more
// events of the message follow one is for the reader to say, once it knows
// which of them it could decode.
func eachPayload(spec Spec, data []byte, fn func(payload []byte, index int)) error {
	if !spec.Batches || !isBatch(data) {
		fn(data, 0)
		return nil
	}
	elems, err := splitBatch(data)
	for i, e := range elems {
		fn(e, i)
	}
	if err == nil && len(elems) == 0 {
		err = errors.New("batch: no events")
	}
	return err
}
