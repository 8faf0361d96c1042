package textclip

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCut(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"short", 40, "short"},
		{strings.Repeat("a", 40), 40, strings.Repeat("a", 40)},
		{strings.Repeat("a", 41), 40, strings.Repeat("a", 40) + "..."},
		{"ab€cd", 3, "ab..."}, // € is 3 bytes: not split
		{"ab€cd", 5, "ab€..."},
		{"a\xffb", 40, "a?b"},
		{"", 0, ""},
	} {
		got := Cut(c.in, c.max)
		if got != c.want {
			t.Errorf("Cut(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("Cut(%q, %d) = %q: not valid UTF-8", c.in, c.max, got)
		}
	}
	if got := CutAll([]string{"abc", "abcdef"}, 4); got[0] != "abc" || got[1] != "abcd..." {
		t.Errorf("CutAll: %q", got)
	}
}

func FuzzCut(f *testing.F) {
	f.Add("ab€cd", 3)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 1<<16 {
			return
		}
		got := Cut(s, max)
		if !utf8.ValidString(got) || len(got) > max+len(Suffix) {
			t.Fatalf("Cut(%q, %d) = %q", s, max, got)
		}
	})
}
