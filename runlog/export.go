package runlog

import (
	"strconv"

	"github.com/symphony-oss/symphony/bus"
)

// AppendJSON writes the event as its JSONL export line (without the line
// break): the same object json.Marshal gives, built without re-validating
// the stored payload, which Follow and History already checked.
func (e Event) AppendJSON(dst []byte) ([]byte, error) {
	dst = append(dst, `{"stream":`...)
	dst = bus.AppendJSONString(dst, e.Stream)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, e.Seq, 10)
	if e.Index != 0 {
		dst = append(dst, `,"index":`...)
		dst = strconv.AppendInt(dst, int64(e.Index), 10)
	}
	dst = append(dst, `,"subject":`...)
	dst = bus.AppendJSONString(dst, e.Subject)
	dst = append(dst, `,"type":`...)
	dst = bus.AppendJSONString(dst, e.Type)
	dst = append(dst, `,"at":`...)
	var err error
	if dst, err = bus.AppendJSONTime(dst, e.At); err != nil {
		return nil, err
	}
	dst = append(dst, `,"event":`...)
	if len(e.Event) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, e.Event...)
	}
	return append(dst, '}'), nil
}
