package auth

import "testing"

func TestBearerToken(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer abc":     "abc",
		"bearer abc":     "abc",
		"BEARER  abc ":   "abc",
		" Bearer a.b.c":  "a.b.c",
		"Bearer ":        "",
		"Bearer":         "",
		"Basic dXNlcjpw": "",
		"abc":            "",
		"":               "",
	} {
		if got := BearerToken(in); got != want {
			t.Errorf("BearerToken(%q) = %q, want %q", in, got, want)
		}
	}
}
