package kit

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/connectkit/connectkit/internal/logline"
)

// jsonHandler writes the same bytes as [slog.JSONHandler] (without options
// but the level), in about 40 % of its time for the lines kit logs most: no
// groups, and values that are strings, integers, booleans, durations or
// times (BENCHMARKS.md 1.22). Any other record goes to an slog.JSONHandler
// that has the same attributes and groups. slog's handler spends most of a
// line on its generality (a pooled state per record, group prefixes,
// ReplaceAttr and empty-attribute checks around every key and value); zap's
// and zerolog's encoders are as fast but write times and durations their
// own way, and the lines' bytes are what users' log pipelines parse. Hence
// this file; TestJSONHandlerMatchesSlog and FuzzJSONHandler hold it to
// slog's bytes.
//
// w must be safe for concurrent use, and get each line in one Write.
type jsonHandler struct {
	w      io.Writer
	level  slog.Leveler
	slow   slog.Handler // slog's, with the same attributes and groups
	prefix []byte       // the attributes of WithAttrs, formatted: `,"k":v`…
	fast   bool         // no group, and every attribute in prefix
}

func newJSONHandler(w io.Writer, level slog.Leveler) *jsonHandler {
	return &jsonHandler{
		w:     w,
		level: level,
		slow:  slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}),
		fast:  true,
	}
}

func (h *jsonHandler) Enabled(_ context.Context, level slog.Level) bool {
	minLevel := slog.LevelInfo
	if h.level != nil {
		minLevel = h.level.Level()
	}
	return level >= minLevel
}

var jsonLinePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledLine bounds the buffers kept in jsonLinePool, so that one huge
// line (a stack trace) does not stay in memory.
const maxPooledLine = 16 << 10

func (h *jsonHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.fast {
		return h.slow.Handle(ctx, r)
	}
	bp := jsonLinePool.Get().(*[]byte)
	b, ok := h.appendRecord((*bp)[:0], r, nil)
	var err error
	if ok {
		_, err = h.w.Write(b)
	}
	if cap(b) <= maxPooledLine {
		*bp = b
		jsonLinePool.Put(bp)
	}
	if !ok {
		return h.slow.Handle(ctx, r)
	}
	return err
}

// appendRecord appends r's line to b, or reports false if a value needs
// slog's handler.
func (h *jsonHandler) appendRecord(b []byte, r slog.Record, times *timeCache) ([]byte, bool) {
	b, ok := appendJSONHead(b, r.Time, r.Level, times)
	if !ok {
		return b, false
	}
	b = append(b, `,"msg":`...)
	b = appendJSONString(b, r.Message)
	b = append(b, h.prefix...)
	r.Attrs(func(a slog.Attr) bool {
		b, ok = appendJSONAttr(b, a)
		return ok
	})
	return append(b, '}', '\n'), ok
}

// appendJSONHead appends a line's start, up to its level, or reports false
// for a time that needs slog's handler. With times not nil, the time is
// appended through it.
func appendJSONHead(b []byte, t time.Time, level slog.Level, times *timeCache) ([]byte, bool) {
	b = append(b, '{')
	if !t.IsZero() {
		var ok bool
		b = append(b, `"time":`...)
		if times != nil {
			b, ok = times.appendTime(b, t.Round(0))
		} else {
			b, ok = appendJSONTime(b, t.Round(0))
		}
		if !ok {
			return b, false
		}
		b = append(b, ',')
	}
	if level == slog.LevelInfo {
		return append(b, `"level":"INFO"`...), true
	}
	b = append(b, `"level":`...)
	return appendJSONString(b, level.String()), true
}

// rpcMsg is an RPC line's message, as appendRecord writes it.
const rpcMsg = `,"msg":"` + logline.Message + `"`

// appendRPC appends l's line: the bytes that appendRecord appends for its
// record (rpcRecord), with the attributes' keys written as constants. It
// reports false where the record needs slog's handler.
func (h *jsonHandler) appendRPC(b []byte, l *logline.RPC, times *timeCache) ([]byte, bool) {
	b, ok := appendJSONHead(b, l.Time, l.Level, times)
	if !ok {
		return b, false
	}
	b = append(b, rpcMsg...)
	b = append(b, h.prefix...)
	b = append(b, `,"peer":`...)
	b = appendJSONString(b, l.Peer)
	if l.Principal != "" {
		b = append(b, `,"principal":`...)
		b = appendJSONString(b, l.Principal)
	}
	b = append(b, `,"code":`...)
	b = appendJSONString(b, l.Code)
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, int64(l.Duration), 10)
	if l.Stream {
		b = append(b, `,"sent":`...)
		b = strconv.AppendInt(b, l.Sent, 10)
		b = append(b, `,"received":`...)
		b = strconv.AppendInt(b, l.Received, 10)
	}
	if l.RequestID != "" {
		b = append(b, `,"request_id":`...)
		b = appendJSONString(b, l.RequestID)
	}
	if l.TraceID != "" {
		b = append(b, `,"trace_id":`...)
		b = appendJSONString(b, l.TraceID)
		b = append(b, `,"span_id":`...)
		b = appendJSONString(b, l.SpanID)
	}
	return append(b, '}', '\n'), true
}

// rpcRecord is the record of l's line, as package interceptors' Logging
// gives it to any other handler.
func rpcRecord(l *logline.RPC) slog.Record {
	r := slog.NewRecord(l.Time, l.Level, logline.Message, 0)
	var buf [9]slog.Attr
	r.AddAttrs(l.AppendAttrs(buf[:0])...)
	return r
}

func (h *jsonHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	h2.slow = h.slow.WithAttrs(attrs)
	if h.fast {
		prefix := append([]byte(nil), h.prefix...)
		for _, a := range attrs {
			if prefix, h2.fast = appendJSONAttr(prefix, a); !h2.fast {
				break
			}
		}
		h2.prefix = prefix
	}
	if !h2.fast {
		h2.prefix = nil
	}
	return &h2
}

func (h *jsonHandler) WithGroup(name string) slog.Handler {
	return &jsonHandler{w: h.w, level: h.level, slow: h.slow.WithGroup(name)}
}

// appendJSONAttr appends `,"key":value`, or reports false for a kind that
// slog's handler formats: groups, floats (as encoding/json does), values
// that resolve themselves, and any other value (empty attributes, which
// slog drops, are among these).
func appendJSONAttr(b []byte, a slog.Attr) ([]byte, bool) {
	v := a.Value
	switch v.Kind() {
	case slog.KindString, slog.KindInt64, slog.KindUint64, slog.KindBool, slog.KindDuration, slog.KindTime:
	default:
		return b, false
	}
	b = append(b, ',')
	b = appendJSONString(b, a.Key)
	b = append(b, ':')
	switch v.Kind() {
	case slog.KindString:
		b = appendJSONString(b, v.String())
	case slog.KindInt64:
		b = strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		b = strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindBool:
		b = strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		b = strconv.AppendInt(b, int64(v.Duration()), 10)
	case slog.KindTime:
		return appendJSONTime(b, v.Time())
	}
	return b, true
}

// appendJSONTime appends t as slog does (t.AppendFormat(b,
// time.RFC3339Nano), quoted), or reports false for a year that RFC 3339
// cannot write (slog writes an error in its place).
//
// Written out because every line has a time: the time package finds the
// zone twice (Year, then AppendFormat) and writes each field with its
// general integer formatting, ~900 instructions a line where this takes
// ~500 (BENCHMARKS.md 1.28). TestAppendJSONTime holds it to AppendFormat's
// bytes.
func appendJSONTime(b []byte, t time.Time) ([]byte, bool) {
	_, offset := t.Zone()
	sec := t.Unix() + int64(offset)
	days := sec / secondsPerDay
	if sec%secondsPerDay < 0 {
		days--
	}
	year, month, day := civilDate(days)
	if year < 0 || year >= 10000 {
		return b, false
	}
	if offset <= -maxTwoDigitOffset || offset >= maxTwoDigitOffset {
		// A zone of 100 hours or more (time.FixedZone takes any offset),
		// whose hours take more than the two digits written below.
		b = append(b, '"')
		b = t.AppendFormat(b, time.RFC3339Nano)
		return append(b, '"'), true
	}
	clock := int(sec - days*secondsPerDay)
	// Into an array, and then appended at once: one capacity check, and
	// constant indexes that need no bounds checks.
	var buf [len(`"2006-01-02T15:04:05.999999999-07:00"`)]byte
	buf[0] = '"'
	put2Digits(buf[1:], int(year/100))
	put2Digits(buf[3:], int(year%100))
	buf[5] = '-'
	put2Digits(buf[6:], month)
	buf[8] = '-'
	put2Digits(buf[9:], day)
	buf[11] = 'T'
	put2Digits(buf[12:], clock/3600)
	buf[14] = ':'
	put2Digits(buf[15:], clock/60%60)
	buf[17] = ':'
	put2Digits(buf[18:], clock%60)
	f, nf := fraction(t.Nanosecond())
	copy(buf[20:30], f[:])
	n := 20 + nf
	if offset == 0 {
		buf[n] = 'Z'
		n++
	} else {
		zone := offset / 60 // minutes, as the time package truncates them
		buf[n] = '+'
		if zone < 0 {
			buf[n] = '-'
			zone = -zone
		}
		put2Digits(buf[n+1:], zone/60)
		buf[n+3] = ':'
		put2Digits(buf[n+4:], zone%60)
		n += 6
	}
	buf[n] = '"'
	return append(b, buf[:n+1]...), true
}

const secondsPerDay = 24 * 60 * 60

// maxTwoDigitOffset is the first zone offset, in seconds, whose hours
// take three digits.
const maxTwoDigitOffset = 100 * 60 * 60

// civilDate returns the proleptic Gregorian date of the day that is days
// after 1970-01-01 (Howard Hinnant's civil_from_days).
func civilDate(days int64) (year int64, month, day int) {
	days += 719468 // from 0000-03-01
	era := days / 146097
	if days < 0 && days%146097 != 0 {
		era--
	}
	doe := days - era*146097                               // [0, 146096]
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // [0, 399]
	doy := doe - (365*yoe + yoe/4 - yoe/100)               // [0, 365], from March 1st
	mp := (5*doy + 2) / 153                                // [0, 11], from March
	day = int(doy - (153*mp+2)/5 + 1)
	month = int(mp) + 3
	if month > 12 {
		month -= 12
	}
	year = yoe + era*400
	if month <= 2 {
		year++
	}
	return year, month, day
}

// put2Digits writes n, from 0 to 99, in two digits at the start of b.
func put2Digits(b []byte, n int) {
	_ = b[1]
	b[0], b[1] = byte('0'+n/10), byte('0'+n%10)
}

// appendJSONString appends s quoted, escaped as slog's JSON handler escapes
// it: quote, backslash and control characters, U+2028 and U+2029, and
// invalid UTF-8 as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start, i := 0, 0
	for ; i+8 <= len(s) && jsonSafe8(s[i:i+8]); i += 8 {
	}
	if len(s)-i < 8 && len(s) >= 8 && jsonSafe8(s[len(s)-8:]) {
		i = len(s) // the rest is within the last 8 bytes, safe
	}
	for i < len(s) {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// jsonSafe8 reports whether none of the 8 bytes of s needs escaping: none
// is a control character, a quote, a backslash or a byte past ASCII. It
// tests them at once, as one word (the zero-byte tests of "Bit Twiddling
// Hacks"), which more than halves the cost of a line's strings.
func jsonSafe8(s string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	_ = s[7] // one bounds check, then one load
	x := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
	quote, backslash := x^('"'*ones), x^('\\'*ones)
	control := (x - 0x20*ones) &^ x                  // a byte below 0x20
	quotes := (quote - ones) &^ quote                // a zero byte of quote
	backslashes := (backslash - ones) &^ backslash   // a zero byte of backslash
	return (x|control|quotes|backslashes)&highs == 0 // or a byte past 0x7f
}
