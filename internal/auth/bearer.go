package auth

import "strings"

// BearerToken returns the token of an "Authorization: Bearer <token>" header
// value (the scheme in any case), or "" when there is none.
func BearerToken(header string) string {
	header = strings.TrimSpace(header)
	if len(header) > 7 && strings.EqualFold(header[:7], "bearer ") {
		return strings.TrimSpace(header[7:])
	}
	return ""
}
