package socketio

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"sync"
)

// PacketType is a Socket.IO v5 packet type.
type PacketType byte

// Socket.IO v5 packet types.
const (
	PacketConnect      PacketType = 0
	PacketDisconnect   PacketType = 1
	PacketEvent        PacketType = 2
	PacketAck          PacketType = 3
	PacketConnectError PacketType = 4
	PacketBinaryEvent  PacketType = 5
	PacketBinaryAck    PacketType = 6
)

// Packet is a Socket.IO packet as a namespace hands it to its Adapter: an
// EVENT's Data is the event name followed by its arguments, an ACK's Data
// the arguments. Type is EVENT or ACK even when Data holds []byte (the
// encoder makes it BINARY_EVENT / BINARY_ACK), as in Node.
type Packet struct {
	Type PacketType
	Nsp  string
	Data []any
	ID   *uint64 // ack id; nil for none
}

var (
	errPacket      = errors.New("socketio: invalid packet")
	errAttachments = errors.New("socketio: illegal attachments")
)

// reservedEvents may not be sent by a client (Node's RESERVED_EVENTS).
func reservedEvent(name string) bool {
	switch name {
	case "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener":
		return true
	}
	return false
}

// inPacket is a packet decoded from a client.
type inPacket struct {
	typ         PacketType
	nsp         string
	id          uint64
	hasID       bool
	attachments int
	data        any // decoded JSON (json.Number for numbers); nil when absent
	hasData     bool
}

// decodePacket decodes the text part of a client packet, as Node's
// socket.io-parser does; anything it would throw on is an error.
func decodePacket(s []byte, maxAttachments int) (inPacket, error) {
	var p inPacket
	if len(s) == 0 || s[0] < '0' || s[0] > '6' {
		return p, errPacket
	}
	p.typ = PacketType(s[0] - '0')
	i := 1
	if p.typ == PacketBinaryEvent || p.typ == PacketBinaryAck {
		j := bytes.IndexByte(s[i:], '-')
		if j <= 0 {
			return p, errAttachments
		}
		n, err := strconv.Atoi(string(s[i : i+j]))
		if err != nil || n < 1 || n > maxAttachments {
			return p, errAttachments
		}
		p.attachments = n
		i += j + 1
	}
	p.nsp = "/"
	if i < len(s) && s[i] == '/' {
		if j := bytes.IndexByte(s[i:], ','); j >= 0 {
			p.nsp = string(s[i : i+j])
			i += j + 1
		} else {
			p.nsp = string(s[i:])
			i = len(s)
		}
	}
	if i < len(s) && s[i] >= '0' && s[i] <= '9' {
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		id, err := strconv.ParseUint(string(s[i:j]), 10, 64)
		if err != nil {
			return p, errPacket
		}
		p.id, p.hasID = id, true
		i = j
	}
	if i < len(s) {
		v, err := decodeJSON(s[i:])
		if err != nil {
			return p, errPacket
		}
		p.data, p.hasData = v, true
	}
	if !payloadValid(p) {
		return p, errPacket
	}
	return p, nil
}

// decodeJSON decodes one JSON value, numbers as json.Number (integer ids
// above 2^53 stay exact); trailing bytes are an error.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errPacket
	}
	return v, nil
}

func payloadValid(p inPacket) bool {
	switch p.typ {
	case PacketConnect:
		if !p.hasData {
			return true
		}
		_, ok := p.data.(map[string]any)
		return ok
	case PacketDisconnect:
		return !p.hasData
	case PacketConnectError:
		switch p.data.(type) {
		case string, map[string]any:
			return true
		}
		return false
	case PacketEvent, PacketBinaryEvent:
		a, ok := p.data.([]any)
		if !ok || len(a) == 0 {
			return false
		}
		switch name := a[0].(type) {
		case json.Number:
			return true
		case string:
			return !reservedEvent(name)
		}
		return false
	case PacketAck, PacketBinaryAck:
		_, ok := p.data.([]any)
		return ok
	}
	return false
}

// reconstruct replaces the placeholders {"_placeholder":true,"num":N} of v
// by the attachments.
func reconstruct(v any, att [][]byte) (any, error) {
	switch x := v.(type) {
	case []any:
		for i, e := range x {
			r, err := reconstruct(e, att)
			if err != nil {
				return nil, err
			}
			x[i] = r
		}
	case map[string]any:
		if ph, _ := x["_placeholder"].(bool); ph {
			num, ok := x["num"].(json.Number)
			n, err := strconv.Atoi(string(num))
			if !ok || err != nil || n < 0 || n >= len(att) {
				return nil, errAttachments
			}
			return att[n], nil
		}
		for k, e := range x {
			r, err := reconstruct(e, att)
			if err != nil {
				return nil, err
			}
			x[k] = r
		}
	}
	return v, nil
}

// hasBinary reports whether v holds []byte inside []any and
// map[string]any values (a []byte field of a struct is encoded by
// encoding/json, as base64).
func hasBinary(v any) bool {
	switch x := v.(type) {
	case []byte:
		return true
	case []any:
		for _, e := range x {
			if hasBinary(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range x {
			if hasBinary(e) {
				return true
			}
		}
	}
	return false
}

type placeholder struct {
	Placeholder bool `json:"_placeholder"`
	Num         int  `json:"num"`
}

// deconstruct copies v with every []byte replaced by a placeholder.
func deconstruct(v any, att *[][]byte) any {
	switch x := v.(type) {
	case []byte:
		*att = append(*att, x)
		return placeholder{true, len(*att) - 1}
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deconstruct(e, att)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deconstruct(e, att)
		}
		return out
	}
	return v
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// appendJSON appends v as JSON without HTML escaping (as JSON.stringify).
func appendJSON(dst []byte, v any) ([]byte, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return dst, err
	}
	return append(dst, bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})...), nil
}

// appendHeader appends type, attachment count, namespace and id.
func appendHeader(b []byte, typ PacketType, attachments int, nsp string, id *uint64) []byte {
	b = append(b, '0'+byte(typ))
	if attachments > 0 {
		b = strconv.AppendInt(b, int64(attachments), 10)
		b = append(b, '-')
	}
	if nsp != "" && nsp != "/" {
		b = append(b, nsp...)
		b = append(b, ',')
	}
	if id != nil {
		b = strconv.AppendUint(b, *id, 10)
	}
	return b
}

// encodePacket encodes p as Node's encoder does: the text packet, then
// its binary attachments.
func encodePacket(p *Packet) ([]byte, [][]byte, error) {
	typ := p.Type
	var data any = p.Data
	var att [][]byte
	if (typ == PacketEvent || typ == PacketAck) && hasBinary(data) {
		data = deconstruct(data, &att)
		if typ == PacketEvent {
			typ = PacketBinaryEvent
		} else {
			typ = PacketBinaryAck
		}
	}
	b := appendHeader(make([]byte, 0, 64), typ, len(att), p.Nsp, p.ID)
	if p.Data != nil || typ == PacketAck {
		if p.Data == nil {
			data = []any{}
		}
		var err error
		if b, err = appendJSON(b, data); err != nil {
			return nil, nil, err
		}
	}
	return b, att, nil
}
