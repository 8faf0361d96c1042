package outbox

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/eventserver/eventserver/internal/protocol"
)

// Version is the version of the JSON shape of a fact, its "v" field. It
// changes only when a field changes meaning or goes away; new fields may
// appear without a new version.
const Version = 1

// wire is the JSON shape of a fact, as the stream and the webhook carry it.
type wire struct {
	V               int             `json:"v"`
	ID              string          `json:"id"`
	Type            string          `json:"type"`
	Time            string          `json:"time"`
	Instance        string          `json:"instance"`
	NodeID          json.RawMessage `json:"node_id"`
	NodeName        string          `json:"node_name"`
	CollaborationID int64           `json:"collaboration_id"`
	OrganizationID  int64           `json:"organization_id"`
	Data            json.RawMessage `json:"data"`
}

// TimeLayout is the layout of a fact's time: RFC 3339 in UTC with exactly
// six decimals (what Python's datetime.fromisoformat reads from 3.11 on).
const TimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// FormatTime renders t as a fact's time.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

func encode(f *protocol.Fact) ([]byte, error) {
	w := wire{
		V:               Version,
		ID:              f.ID,
		Type:            f.Type,
		Time:            FormatTime(f.Time),
		Instance:        f.Instance,
		NodeID:          f.NodeID,
		NodeName:        f.NodeName,
		CollaborationID: f.CollaborationID,
		OrganizationID:  f.OrganizationID,
		Data:            f.Data,
	}
	if len(w.NodeID) == 0 {
		w.NodeID = json.RawMessage("null")
	}
	if len(w.Data) == 0 {
		w.Data = json.RawMessage("null")
	}
	return json.Marshal(w)
}

// NewID returns a new UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then
// 74 random bits, so that ids sort roughly by creation time.
func NewID(now time.Time) string {
	var b [16]byte
	ms := uint64(now.UnixMilli())
	for i := 0; i < 6; i++ {
		b[i] = byte(ms >> (40 - 8*i))
	}
	_, _ = rand.Read(b[6:]) // never fails (crypto/rand, Go ≥ 1.24)
	b[6] = b[6]&0x0f | 0x70 // version 7
	b[8] = b[8]&0x3f | 0x80 // variant 10
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
