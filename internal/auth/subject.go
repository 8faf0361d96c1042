package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/eventserver/eventserver/pkg/textclip"
)

// maxExactFloat is 2^53: every integer below it is exact in a float64; at
// it, a float64 may be 2^53+1 rounded.
const maxExactFloat = 1 << 53

// Subject is the `sub` claim of a token. vantage6 4.14 writes it as a JSON
// number (the id of the node or user); Keycloak (vantage6 5) writes a string.
// The zero value is "no subject".
type Subject struct {
	// Value is the subject as text: a canonical decimal integer when Numeric,
	// the string itself otherwise.
	Value string
	// Numeric reports that the claim was a JSON number.
	Numeric bool
}

// NumericSubject is the subject of a JSON number id, as vantage6 4.x writes
// it.
func NumericSubject(id int64) Subject {
	return Subject{Value: strconv.FormatInt(id, 10), Numeric: true}
}

// String returns the subject as text.
func (s Subject) String() string { return s.Value }

// Int64 returns the subject as an integer. It reports false when the subject
// is not numeric or does not fit in an int64.
func (s Subject) Int64() (int64, bool) {
	if !s.Numeric {
		return 0, false
	}
	n, err := strconv.ParseInt(s.Value, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// MarshalJSON writes a JSON number when the subject is numeric and a JSON
// string otherwise.
func (s Subject) MarshalJSON() ([]byte, error) {
	if !s.Numeric {
		return json.Marshal(s.Value)
	}
	n, ok := new(big.Int).SetString(s.Value, 10)
	if !ok {
		return nil, fmt.Errorf("auth: numeric subject %q is not an integer", textclip.Cut(s.Value, textclip.Name))
	}
	return []byte(n.String()), nil
}

// UnmarshalJSON is the inverse of MarshalJSON: it accepts an integral JSON
// number or a JSON string. A JSON null leaves s unchanged.
func (s *Subject) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if bytes.Equal(data, []byte("null")) {
		return nil
	}
	if len(data) > 0 && data[0] == '"' {
		var str string
		if err := json.Unmarshal(data, &str); err != nil {
			return fmt.Errorf("auth: subject: %w", err)
		}
		*s = Subject{Value: str}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("auth: subject: %w", err)
	}
	n, ok := v.(json.Number)
	if !ok {
		return fmt.Errorf("auth: subject must be a JSON number or string, got %s", jsonKind(v))
	}
	sub, err := SubjectFromClaim(n)
	if err != nil {
		return err
	}
	*s = sub
	return nil
}

// errSubject is the reason SubjectFromClaim refuses a value.
var errSubject = errors.New("must be an integer or a non-empty string")

// SubjectFromClaim converts a decoded `sub` claim into a Subject. It accepts
// a json.Number or float64 holding an integer, an int or int64, and a
// non-empty string. Anything else (objects, booleans, 1.5, "", nil) is an
// error.
func SubjectFromClaim(v any) (Subject, error) {
	switch x := v.(type) {
	case string:
		if x == "" {
			return Subject{}, fmt.Errorf("auth: subject is an empty string: %w", errSubject)
		}
		return Subject{Value: x}, nil
	case json.Number:
		if n, ok := new(big.Int).SetString(string(x), 10); ok {
			return Subject{Value: n.String(), Numeric: true}, nil
		}
		// 2.0 or 9.007199254740993e15: read exactly, never through
		// float64 (which would make 9007199254740993.0 another id).
		n, ok := ExactInteger(x)
		if !ok {
			return Subject{}, fmt.Errorf("auth: subject is a non-integral number: %w", errSubject)
		}
		if !n.IsInt64() {
			return Subject{}, fmt.Errorf("auth: subject number is out of range: %w", errSubject)
		}
		return Subject{Value: n.String(), Numeric: true}, nil
	case float64:
		return subjectFromFloat(x)
	case int:
		return Subject{Value: strconv.Itoa(x), Numeric: true}, nil
	case int64:
		return Subject{Value: strconv.FormatInt(x, 10), Numeric: true}, nil
	case nil:
		return Subject{}, fmt.Errorf("auth: subject is null: %w", errSubject)
	}
	return Subject{}, fmt.Errorf("auth: subject is %s: %w", jsonKind(v), errSubject)
}

func subjectFromFloat(f float64) (Subject, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		return Subject{}, fmt.Errorf("auth: subject is a non-integral number: %w", errSubject)
	}
	if math.Abs(f) >= maxExactFloat {
		return Subject{}, fmt.Errorf("auth: subject number is too large to be exact: %w", errSubject)
	}
	return Subject{Value: strconv.FormatInt(int64(f), 10), Numeric: true}, nil
}

// maxExponent bounds the exponent of a JSON number read exactly: 1e1000000
// would otherwise take a million-digit computation to refuse.
const maxExponent = 400

// ExactInteger returns the integer a decoded JSON number holds, exactly: a
// json.Number is read as the decimal it is (9007199254740993.0 and 9.007e3
// are integers; 1.5 is not), never through float64, whose rounding turns an
// id above 2^53 into its neighbour's. A float64 is accepted only below 2^53,
// where it is exact; ints are accepted as they are. Anything else is false.
func ExactInteger(v any) (*big.Int, bool) {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if n, ok := new(big.Int).SetString(s, 10); ok {
			return n, true
		}
		if i := strings.IndexAny(s, "eE"); i >= 0 {
			e, err := strconv.Atoi(s[i+1:])
			if err != nil || e > maxExponent || e < -maxExponent {
				return nil, false
			}
		}
		r, ok := new(big.Rat).SetString(s)
		if !ok || !r.IsInt() {
			return nil, false
		}
		return r.Num(), true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) || x != math.Trunc(x) || math.Abs(x) >= maxExactFloat {
			return nil, false
		}
		return big.NewInt(int64(x)), true
	case int:
		return big.NewInt(int64(x)), true
	case int64:
		return big.NewInt(x), true
	}
	return nil, false
}

// jsonKind names the JSON type of a decoded value, for error messages that
// must not echo the value itself.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64, float32, int, int64, int32:
		return "a number"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("of type %T", v)
}
