// Package textclip shortens text taken from clients, tokens or peers for
// an error message or a log line: one rule everywhere, so that no message
// grows with what a client sends and none ends in a broken character.
package textclip

import "strings"

// Suffix marks text that was cut.
const Suffix = "..."

// Common limits.
const (
	// Name bounds a name, id or claim value quoted in an error (40 bytes).
	Name = 40
	// Line bounds a payload quoted in a log line (80 bytes).
	Line = 80
)

// Cut returns s, made valid UTF-8 (invalid bytes become "?"), cut to at
// most max bytes on a character boundary, with Suffix when it was cut.
func Cut(s string, max int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !isStart(s[i]) {
		i--
	}
	return s[:i] + Suffix
}

// isStart reports whether b begins a UTF-8 character.
func isStart(b byte) bool { return b&0xC0 != 0x80 }

// CutAll cuts each of in.
func CutAll(in []string, max int) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = Cut(s, max)
	}
	return out
}
