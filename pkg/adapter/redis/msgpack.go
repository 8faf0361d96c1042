package redis

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// This file is a MessagePack codec that makes the choices of notepack.io
// 3.0.1, the codec of @socket.io/redis-adapter and @socket.io/redis-emitter:
//
//   - a number is an integer in the smallest msgpack int format when it is
//     integral (as JS has one number type, 3.0 is the integer 3), a float 64
//     otherwise;
//   - a string uses fixstr, str 8, str 16 or str 32 by its UTF-8 length;
//   - a []byte (Node Buffer) is bin 8/16/32;
//   - arrays and maps use the fix, 16 and 32-bit formats.
//
// The decoder accepts what notepack.io's decoder accepts, including its
// legacy extensions: fixext 1 of type 0 (JS undefined, decoded as nil), ext
// of type 0 (an ArrayBuffer, decoded as []byte), fixext 8 of type 0 (a Date
// in milliseconds) and the timestamp extension (type -1), both decoded as
// a jsDate (nil where JavaScript would have an Invalid Date). Any other extension decodes as []any{type, []byte}, as notepack
// does.

// maxDepth bounds the nesting of encoded and decoded values, so that a
// cyclic value or a hostile message cannot exhaust the stack.
const maxDepth = 100

var (
	errDepth     = errors.New("msgpack: value nested too deeply")
	errTruncated = errors.New("msgpack: truncated message")
)

// appendNil appends nil.
func appendNil(b []byte) []byte { return append(b, 0xc0) }

// appendBool appends true or false.
func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xc3)
	}
	return append(b, 0xc2)
}

// appendInt appends a signed integer in the smallest format notepack uses.
func appendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return appendUint(b, uint64(v))
	}
	switch {
	case v >= -0x20:
		return append(b, byte(v))
	case v >= -0x80:
		return append(b, 0xd0, byte(v))
	case v >= -0x8000:
		return append(b, 0xd1, byte(v>>8), byte(v))
	case v >= -0x80000000:
		return append(b, 0xd2, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	default:
		b = append(b, 0xd3)
		return binary.BigEndian.AppendUint64(b, uint64(v))
	}
}

// appendUint appends an unsigned integer in the smallest format.
func appendUint(b []byte, v uint64) []byte {
	switch {
	case v < 0x80:
		return append(b, byte(v))
	case v < 0x100:
		return append(b, 0xcc, byte(v))
	case v < 0x10000:
		return append(b, 0xcd, byte(v>>8), byte(v))
	case v < 0x100000000:
		return append(b, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	default:
		b = append(b, 0xcf)
		return binary.BigEndian.AppendUint64(b, v)
	}
}

// appendFloat appends a JS number: an integer when v is integral and fits
// in 64 bits, a float 64 otherwise.
func appendFloat(b []byte, v float64) []byte {
	if v == math.Trunc(v) && !math.IsInf(v, 0) {
		if v >= 0 && v < 1<<64 {
			return appendUint(b, uint64(v))
		}
		if v < 0 && v >= -(1<<63) {
			return appendInt(b, int64(v))
		}
	}
	b = append(b, 0xcb)
	return binary.BigEndian.AppendUint64(b, math.Float64bits(v))
}

// appendString appends a string.
func appendString(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 0x20:
		b = append(b, 0xa0|byte(n))
	case n < 0x100:
		b = append(b, 0xd9, byte(n))
	case n < 0x10000:
		b = append(b, 0xda, byte(n>>8), byte(n))
	default:
		b = append(b, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, s...)
}

// appendBin appends binary data.
func appendBin(b []byte, v []byte) []byte {
	n := len(v)
	switch {
	case n < 0x100:
		b = append(b, 0xc4, byte(n))
	case n < 0x10000:
		b = append(b, 0xc5, byte(n>>8), byte(n))
	default:
		b = append(b, 0xc6, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, v...)
}

// appendArrayHeader appends the header of an array of n elements.
func appendArrayHeader(b []byte, n int) []byte {
	switch {
	case n < 0x10:
		return append(b, 0x90|byte(n))
	case n < 0x10000:
		return append(b, 0xdc, byte(n>>8), byte(n))
	default:
		return append(b, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// appendMapHeader appends the header of a map of n pairs.
func appendMapHeader(b []byte, n int) []byte {
	switch {
	case n < 0x10:
		return append(b, 0x80|byte(n))
	case n < 0x10000:
		return append(b, 0xde, byte(n>>8), byte(n))
	default:
		return append(b, 0xdf, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// appendStrings appends an array of strings; nil is the empty array.
func appendStrings[S ~string](b []byte, ss []S) []byte {
	b = appendArrayHeader(b, len(ss))
	for _, s := range ss {
		b = appendString(b, string(s))
	}
	return b
}

// appendValue appends any Go value the way JSON would carry it to a Node
// peer, except that binary data stays binary: []byte and byte buffers are
// bin, maps are maps (keys sorted, as Go maps have no order), slices and
// arrays are arrays. Structs and values with their own JSON or text
// encoding go through encoding/json, so they look as they do to Socket.IO
// clients. A channel, a function or a reader that cannot be read without
// consuming it is an error.
func appendValue(b []byte, v any) ([]byte, error) {
	return appendAny(b, v, 0)
}

func appendAny(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return b, errDepth
	}
	switch v := v.(type) {
	case nil:
		return appendNil(b), nil
	case string:
		return appendString(b, v), nil
	case bool:
		return appendBool(b, v), nil
	case int:
		return appendInt(b, int64(v)), nil
	case int8:
		return appendInt(b, int64(v)), nil
	case int16:
		return appendInt(b, int64(v)), nil
	case int32:
		return appendInt(b, int64(v)), nil
	case int64:
		return appendInt(b, v), nil
	case uint:
		return appendUint(b, uint64(v)), nil
	case uint8:
		return appendUint(b, uint64(v)), nil
	case uint16:
		return appendUint(b, uint64(v)), nil
	case uint32:
		return appendUint(b, uint64(v)), nil
	case uint64:
		return appendUint(b, v), nil
	case float64:
		return appendFloat(b, v), nil
	case float32:
		return appendFloat(b, float64(v)), nil
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return appendInt(b, i), nil
		}
		if u, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			return appendUint(b, u), nil
		}
		f, err := v.Float64()
		if err != nil {
			return b, fmt.Errorf("msgpack: %w", err)
		}
		return appendFloat(b, f), nil
	case []byte:
		if v == nil {
			return appendNil(b), nil
		}
		return appendBin(b, v), nil
	case []any:
		if v == nil {
			return appendNil(b), nil
		}
		b = appendArrayHeader(b, len(v))
		var err error
		for _, e := range v {
			if b, err = appendAny(b, e, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case []string:
		if v == nil {
			return appendNil(b), nil
		}
		return appendStrings(b, v), nil
	case map[string]any:
		if v == nil {
			return appendNil(b), nil
		}
		b = appendMapHeader(b, len(v))
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var err error
		for _, k := range keys {
			b = appendString(b, k)
			if b, err = appendAny(b, v[k], depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case *strings.Reader:
		if v == nil {
			return appendNil(b), nil
		}
		buf := make([]byte, v.Size())
		n, err := v.ReadAt(buf, 0)
		if err != nil && !errors.Is(err, io.EOF) {
			return b, fmt.Errorf("msgpack: %w", err)
		}
		return appendString(b, string(buf[:n])), nil
	case *bytes.Reader:
		if v == nil {
			return appendNil(b), nil
		}
		buf := make([]byte, v.Size())
		n, err := v.ReadAt(buf, 0)
		if err != nil && !errors.Is(err, io.EOF) {
			return b, fmt.Errorf("msgpack: %w", err)
		}
		return appendBin(b, buf[:n]), nil
	case interface{ Bytes() []byte }:
		// *bytes.Buffer and the like: binary, read without
		// consuming it (local delivery reads it too).
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
			return appendNil(b), nil
		}
		return appendBin(b, v.Bytes()), nil
	case json.Marshaler, encoding.TextMarshaler:
		return appendJSON(b, v, depth)
	case io.Reader:
		return b, fmt.Errorf("msgpack: cannot encode %T without consuming it", v)
	}
	return appendReflect(b, reflect.ValueOf(v), depth)
}

// appendReflect encodes the kinds appendAny has no case for.
func appendReflect(b []byte, rv reflect.Value, depth int) ([]byte, error) {
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return appendNil(b), nil
		}
		return appendAny(b, rv.Elem().Interface(), depth+1)
	case reflect.Bool:
		return appendBool(b, rv.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return appendInt(b, rv.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return appendUint(b, rv.Uint()), nil
	case reflect.Float32, reflect.Float64:
		return appendFloat(b, rv.Float()), nil
	case reflect.String:
		return appendString(b, rv.String()), nil
	case reflect.Slice:
		if rv.IsNil() {
			return appendNil(b), nil
		}
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			return appendBin(b, rv.Bytes()), nil
		}
		fallthrough
	case reflect.Array:
		n := rv.Len()
		b = appendArrayHeader(b, n)
		var err error
		for i := range n {
			if b, err = appendAny(b, rv.Index(i).Interface(), depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			// encoding/json knows how to turn int and text keys into strings.
			return appendJSON(b, rv.Interface(), depth)
		}
		if rv.IsNil() {
			return appendNil(b), nil
		}
		keys := rv.MapKeys()
		slices.SortFunc(keys, func(x, y reflect.Value) int { return strings.Compare(x.String(), y.String()) })
		b = appendMapHeader(b, len(keys))
		var err error
		for _, k := range keys {
			b = appendString(b, k.String())
			if b, err = appendAny(b, rv.MapIndex(k).Interface(), depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case reflect.Struct:
		return appendJSON(b, rv.Interface(), depth)
	default:
		return b, fmt.Errorf("msgpack: cannot encode a value of type %s", rv.Type())
	}
}

// appendJSON encodes v as encoding/json sees it.
func appendJSON(b []byte, v any, depth int) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return b, fmt.Errorf("msgpack: %w", err)
	}
	doc, err := decodeJSON(raw)
	if err != nil {
		return b, err
	}
	return appendAny(b, doc, depth+1)
}

// decodeJSON parses a JSON document into nil, bool, string, int64 or
// uint64 (an integral number that fits), float64, []any and map[string]any: the same
// types decodeMsgpack returns, so a value looks the same whichever codec
// carried it.
func decodeJSON(raw []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	if d.More() {
		return nil, errors.New("json: trailing data")
	}
	return normalizeJSON(v), nil
}

func normalizeJSON(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return i
		}
		// 2^63 to 2^64-1: msgpack's uint 64 keeps them exact.
		if u, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			return u
		}
		f, _ := v.Float64() // the decoder validated the number
		return f
	case []any:
		for i, e := range v {
			v[i] = normalizeJSON(e)
		}
		return v
	case map[string]any:
		for k, e := range v {
			v[k] = normalizeJSON(e)
		}
		return v
	default:
		return v
	}
}

// decodeMsgpack decodes one msgpack value that must fill s entirely.
// Integers are int64 (uint64 above math.MaxInt64), other numbers float64,
// bin is []byte, arrays []any, maps map[string]any.
func decodeMsgpack(s string) (any, error) {
	d := mpDecoder{s: s}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.i != len(d.s) {
		return nil, fmt.Errorf("msgpack: %d trailing bytes", len(d.s)-d.i)
	}
	return v, nil
}

// mpDecoder reads msgpack from a string, as go-redis hands out payloads.
type mpDecoder struct {
	s string
	i int
}

func (d *mpDecoder) need(n int) error {
	if n < 0 || len(d.s)-d.i < n {
		return errTruncated
	}
	return nil
}

func (d *mpDecoder) byte1() (byte, error) {
	if err := d.need(1); err != nil {
		return 0, err
	}
	c := d.s[d.i]
	d.i++
	return c, nil
}

func (d *mpDecoder) uintN(n int) (uint64, error) {
	if err := d.need(n); err != nil {
		return 0, err
	}
	var v uint64
	for k := range n {
		v = v<<8 | uint64(d.s[d.i+k])
	}
	d.i += n
	return v, nil
}

func (d *mpDecoder) take(n int) (string, error) {
	if err := d.need(n); err != nil {
		return "", err
	}
	s := d.s[d.i : d.i+n]
	d.i += n
	return s, nil
}

func (d *mpDecoder) str(n int) (string, error) {
	s, err := d.take(n)
	if err != nil {
		return "", err
	}
	if !utf8.ValidString(s) {
		// Buffer.toString('utf8') replaces bad sequences; so do we.
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s, nil
}

func (d *mpDecoder) bin(n int) ([]byte, error) {
	s, err := d.take(n)
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

func (d *mpDecoder) array(n int, depth int) (any, error) {
	// Every element takes at least one byte: refuse impossible lengths
	// before allocating.
	if err := d.need(n); err != nil {
		return nil, err
	}
	a := make([]any, n)
	for k := range n {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a[k] = v
	}
	return a, nil
}

func (d *mpDecoder) dict(n int, depth int) (any, error) {
	if err := d.need(2 * n); err != nil {
		return nil, err
	}
	m := make(map[string]any, n)
	for range n {
		k, err := d.key(depth + 1)
		if err != nil {
			return nil, err
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[k] = v
	}
	return m, nil
}

// key decodes a map key: a string, read without boxing it, or any other
// value turned into a string.
func (d *mpDecoder) key(depth int) (string, error) {
	if d.i < len(d.s) {
		var n uint64
		var err error
		switch c := d.s[d.i]; {
		case c >= 0xa0 && c < 0xc0:
			d.i++
			n = uint64(c & 0x1f)
		case c == 0xd9 || c == 0xda || c == 0xdb:
			d.i++
			n, err = d.uintN(1 << (c - 0xd9))
		default:
			v, err := d.value(depth)
			return mapKey(v), err
		}
		if err != nil {
			return "", err
		}
		return d.str(int(n))
	}
	return "", errTruncated
}

// mapKey turns a decoded key into a string, as a JS object would.
func mapKey(k any) string {
	switch k := k.(type) {
	case string:
		return k
	case nil:
		return "null"
	case int64:
		return strconv.FormatInt(k, 10)
	case float64:
		return strconv.FormatFloat(k, 'g', -1, 64)
	default:
		return fmt.Sprint(k)
	}
}

// ext decodes an extension of n data bytes.
func (d *mpDecoder) ext(n int, fixed bool) (any, error) {
	t, err := d.byte1()
	if err != nil {
		return nil, err
	}
	typ := int8(t)
	switch {
	case typ == 0 && fixed && n == 1:
		// notepack's legacy encoding of undefined.
		if _, err := d.take(1); err != nil {
			return nil, err
		}
		return nil, nil
	case typ == 0 && fixed && n == 8:
		// notepack's legacy Date: milliseconds as a signed 64-bit integer.
		ms, err := d.uintN(8)
		if err != nil {
			return nil, err
		}
		return newDate(int64(ms), 0, 0), nil
	case typ == 0 && !fixed:
		// notepack's legacy ArrayBuffer.
		return d.bin(n)
	case typ == -1 && n == 4:
		sec, err := d.uintN(4)
		if err != nil {
			return nil, err
		}
		return newDate(0, int64(sec), 0), nil
	case typ == -1 && n == 8:
		v, err := d.uintN(8)
		if err != nil {
			return nil, err
		}
		return newDate(0, int64(v&(1<<34-1)), int64(v>>34)), nil
	case typ == -1 && n == 12:
		ns, err := d.uintN(4)
		if err != nil {
			return nil, err
		}
		sec, err := d.uintN(8)
		if err != nil {
			return nil, err
		}
		return newDate(0, int64(sec), int64(ns)), nil
	}
	data, err := d.bin(n)
	if err != nil {
		return nil, err
	}
	return []any{int64(typ), data}, nil
}

func (d *mpDecoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, errDepth
	}
	c, err := d.byte1()
	if err != nil {
		return nil, err
	}
	switch {
	case c < 0x80:
		return int64(c), nil
	case c < 0x90:
		return d.dict(int(c&0x0f), depth)
	case c < 0xa0:
		return d.array(int(c&0x0f), depth)
	case c < 0xc0:
		return d.str(int(c & 0x1f))
	case c >= 0xe0:
		return int64(int8(c)), nil
	}
	switch c {
	case 0xc0:
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xc4, 0xc5, 0xc6:
		n, err := d.uintN(1 << (c - 0xc4))
		if err != nil {
			return nil, err
		}
		return d.bin(int(n))
	case 0xc7, 0xc8, 0xc9:
		n, err := d.uintN(1 << (c - 0xc7))
		if err != nil {
			return nil, err
		}
		return d.ext(int(n), false)
	case 0xca:
		v, err := d.uintN(4)
		if err != nil {
			return nil, err
		}
		return float64(math.Float32frombits(uint32(v))), nil
	case 0xcb:
		v, err := d.uintN(8)
		if err != nil {
			return nil, err
		}
		return math.Float64frombits(v), nil
	case 0xcc, 0xcd, 0xce, 0xcf:
		v, err := d.uintN(1 << (c - 0xcc))
		if err != nil {
			return nil, err
		}
		if v > math.MaxInt64 {
			return v, nil
		}
		return int64(v), nil
	case 0xd0:
		v, err := d.uintN(1)
		return int64(int8(v)), err
	case 0xd1:
		v, err := d.uintN(2)
		return int64(int16(v)), err
	case 0xd2:
		v, err := d.uintN(4)
		return int64(int32(v)), err
	case 0xd3:
		v, err := d.uintN(8)
		return int64(v), err
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return d.ext(1<<(c-0xd4), true)
	case 0xd9, 0xda, 0xdb:
		n, err := d.uintN(1 << (c - 0xd9))
		if err != nil {
			return nil, err
		}
		return d.str(int(n))
	case 0xdc, 0xdd:
		n, err := d.uintN(2 << (c - 0xdc))
		if err != nil {
			return nil, err
		}
		return d.array(int(n), depth)
	case 0xde, 0xdf:
		n, err := d.uintN(2 << (c - 0xde))
		if err != nil {
			return nil, err
		}
		return d.dict(int(n), depth)
	}
	return nil, fmt.Errorf("msgpack: invalid byte 0x%02x", c)
}

// maxDateMs is the range of a JavaScript Date: ±8.64e15 ms around 1970.
const maxDateMs = 8.64e15

// jsDate is a JavaScript Date that a Node peer sent (notepack encodes a
// Date as the timestamp extension). Its JSON is Date.prototype.toJSON's,
// so a client gets from us what it gets through a Node server:
// milliseconds always written, years past 9999 or before 0 as ±YYYYYY
// (which time.Time's MarshalJSON refuses).
type jsDate struct{ time.Time }

// newDate is the Date of ms milliseconds plus sec seconds and ns
// nanoseconds, cut to the millisecond as JavaScript does; nil outside
// the range of a Date (an Invalid Date, whose JSON is null).
func newDate(ms, sec, ns int64) any {
	const maxSec = maxDateMs / 1000
	if sec > maxSec || sec < -maxSec || ms > maxDateMs || ms < -maxDateMs {
		return nil
	}
	t := ms + sec*1000 + ns/1e6
	if t > maxDateMs || t < -maxDateMs {
		return nil
	}
	return jsDate{time.UnixMilli(t).UTC()}
}

// MarshalJSON writes the date as toISOString does.
func (d jsDate) MarshalJSON() ([]byte, error) {
	t := d.UTC()
	b := make([]byte, 0, 32)
	b = append(b, '"')
	switch y := t.Year(); {
	case y >= 0 && y <= 9999:
		b = fmt.Appendf(b, "%04d", y)
	case y < 0:
		b = fmt.Appendf(b, "-%06d", -y)
	default:
		b = fmt.Appendf(b, "+%06d", y)
	}
	b = fmt.Appendf(b, "-%02d-%02dT%02d:%02d:%02d.%03dZ\"", t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1e6)
	return b, nil
}
