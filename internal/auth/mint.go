package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Mint signs an HS256 access token with secret. The token carries claims
// plus `type: "access"`, `iat` and `nbf` (now) and `exp` (now+ttl), which
// override any value of the same name in claims, and a random `jti` unless
// claims already has one. A zero now means time.Now(). claims is not
// modified.
func Mint(secret []byte, claims map[string]any, ttl time.Duration, now time.Time) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("auth: mint: empty secret")
	}
	if ttl <= 0 {
		return "", fmt.Errorf("auth: mint: ttl %v is not positive", ttl)
	}
	if now.IsZero() {
		now = time.Now()
	}

	c := make(jwt.MapClaims, len(claims)+5)
	maps.Copy(c, claims)
	c["type"] = "access"
	c["iat"] = now.Unix()
	c["nbf"] = now.Unix()
	c["exp"] = now.Add(ttl).Unix()
	if _, ok := c["jti"]; !ok {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("auth: mint: jti: %w", err)
		}
		c["jti"] = hex.EncodeToString(b[:])
	}

	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: mint: %w", err)
	}
	return s, nil
}
