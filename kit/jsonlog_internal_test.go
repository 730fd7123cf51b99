package kit

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"testing"
	"testing/slogtest"
	"time"
)

// bothJSON formats rs with jsonHandler and slog's JSONHandler, each made by
// setup from a fresh handler, and returns the two outputs.
func bothJSON(t testing.TB, level slog.Level, setup func(slog.Handler) slog.Handler, rs ...slog.Record) (ours, slogs string) {
	t.Helper()
	var a, b bytes.Buffer
	for _, c := range []struct {
		h   slog.Handler
		out *bytes.Buffer
	}{
		{newJSONHandler(&a, level), &a},
		{slog.NewJSONHandler(&b, &slog.HandlerOptions{Level: level}), &b},
	} {
		h := setup(c.h)
		for _, r := range rs {
			if h.Enabled(context.Background(), r.Level) {
				if err := h.Handle(context.Background(), r.Clone()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return a.String(), b.String()
}

func record(level slog.Level, msg string, attrs ...slog.Attr) slog.Record {
	r := slog.NewRecord(time.Date(2026, 12, 6, 12, 10, 31, 509587511, time.UTC), level, msg, 0)
	r.AddAttrs(attrs...)
	return r
}

func TestJSONHandlerMatchesSlog(t *testing.T) {
	same := func(h slog.Handler) slog.Handler { return h }
	shared := func(h slog.Handler) slog.Handler {
		return h.WithAttrs([]slog.Attr{slog.String("kind", "server"), slog.String("procedure", "/pkg.Svc/Do")}).
			WithAttrs([]slog.Attr{slog.String("http", "HTTP/1.1")})
	}
	berlin := time.FixedZone("CET", 3600)
	rpcLine := []slog.Attr{slog.String("peer", "127.0.0.1:56430"), slog.String("code", "ok"),
		slog.Duration("duration", 66779*time.Nanosecond), slog.String("request_id", "24d41f84-b342-4607-8b25-afefdd539c27")}
	for _, c := range []struct {
		name  string
		setup func(slog.Handler) slog.Handler
		r     slog.Record
		fast  bool // jsonHandler formats it itself
	}{
		{"rpc line", shared, record(slog.LevelInfo, "rpc", rpcLine...), true},
		{"every plain kind", same, record(slog.LevelDebug, "m", slog.Int("i", -7), slog.Uint64("u", math.MaxUint64),
			slog.Bool("b", true), slog.Duration("d", -time.Second), slog.Time("t", time.Date(2020, 1, 2, 3, 4, 5, 600, berlin)),
			slog.String("", "empty key")), true},
		{"escapes", same, record(slog.LevelWarn, "a\"b\\c\nd\re\tf\x00\x1f\x7f<>&", slog.String("k\"\u2028", "\u2029é€😀\xff\xfe"),
			slog.String("bad\xc3", "x\xe2\x80")), true},
		{"a level between levels", same, record(slog.LevelInfo+2, "m"), true},
		{"a zero time", same, slog.NewRecord(time.Time{}, slog.LevelError, "m", 0), true},
		{"a time with a monotonic reading, in a zone", same, slog.NewRecord(time.Now().In(berlin), slog.LevelInfo, "m", 0), true},
		{"a time at the start of a second", same, slog.NewRecord(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo, "m", 0), true},
		{"a float", same, record(slog.LevelInfo, "m", slog.Float64("f", 1e21)), false},
		{"an error", same, record(slog.LevelError, "m", slog.Any("error", context.Canceled)), false},
		{"a struct", same, record(slog.LevelInfo, "m", slog.Any("v", struct{ A int }{1})), false},
		{"an empty attribute", same, record(slog.LevelInfo, "m", slog.Attr{}, slog.Int("after", 1)), false},
		{"a group", same, record(slog.LevelInfo, "m", slog.Group("g", slog.Int("a", 1)), slog.Group("empty")), false},
		{"a year past 9999", same, record(slog.LevelInfo, "m", slog.Time("t", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))), false},
		{"a value that resolves itself", same, record(slog.LevelInfo, "m", slog.Any("v", slog.StringValue("x")), slog.Any("lv", logValuer{})), false},
		{"WithGroup", func(h slog.Handler) slog.Handler {
			return h.WithAttrs(rpcLine[:1]).WithGroup("g").WithAttrs(rpcLine[1:2])
		},
			record(slog.LevelInfo, "m", slog.Int("i", 1)), false},
		{"WithGroup of no name", func(h slog.Handler) slog.Handler { return h.WithGroup("") }, record(slog.LevelInfo, "m", rpcLine...), false},
		{"WithAttrs of a float", func(h slog.Handler) slog.Handler {
			return h.WithAttrs([]slog.Attr{slog.Float64("f", 0.5)}).WithAttrs(rpcLine[:1])
		},
			record(slog.LevelInfo, "m", rpcLine...), false},
		{"WithAttrs of nothing", func(h slog.Handler) slog.Handler { return h.WithAttrs(nil) }, record(slog.LevelInfo, "m", rpcLine...), true},
		{"below the level", same, record(slog.LevelDebug-1, "m"), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ours, slogs := bothJSON(t, slog.LevelDebug, c.setup, c.r)
			if ours != slogs {
				t.Errorf("jsonHandler wrote\n%s\nslog's JSONHandler\n%s", ours, slogs)
			}
			h := c.setup(newJSONHandler(&bytes.Buffer{}, slog.LevelDebug)).(*jsonHandler)
			_, fast := h.appendRecord(nil, c.r, nil)
			if fast = fast && h.fast; fast != c.fast {
				t.Errorf("formatted by jsonHandler itself: %v, want %v", fast, c.fast)
			}
		})
	}
}

type logValuer struct{}

func (logValuer) LogValue() slog.Value { return slog.IntValue(1) }

func TestJSONHandlerPassesSlogtest(t *testing.T) {
	var buf bytes.Buffer
	slogtest.Run(t, func(*testing.T) slog.Handler {
		buf.Reset()
		return newJSONHandler(&buf, slog.LevelInfo)
	}, func(t *testing.T) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatalf("%v: %q", err, buf.String())
		}
		return m
	})
}

// FuzzJSONHandler checks jsonHandler against slog's JSONHandler on
// arbitrary strings and numbers, in the message, keys, values, and
// attributes given to WithAttrs.
func FuzzJSONHandler(f *testing.F) {
	f.Add("rpc", "peer", "127.0.0.1:1", int64(66779), int64(1765000000), "request_id", "a-b", true)
	f.Add("a\"b\\\n\x00\x7f", "k\u2028", "\u2029é\xff", int64(-1), int64(-62135596800), "", "\xc3", false)
	f.Add("", "", "", int64(math.MinInt64), int64(253402300800), "😀", "\x1f", true)
	f.Fuzz(func(t *testing.T, msg, key, val string, n, unix int64, prefixKey, prefixVal string, withPrefix bool) {
		tm := time.Unix(unix, n).In(time.FixedZone("z", int(n%50000)))
		r := slog.NewRecord(tm, slog.Level(n%20), msg, 0)
		r.AddAttrs(slog.String(key, val), slog.Int64(val, n), slog.Uint64(key, uint64(n)), slog.Bool(msg, n%2 == 0),
			slog.Duration(key, time.Duration(n)), slog.Time(val, tm))
		setup := func(h slog.Handler) slog.Handler { return h }
		if withPrefix {
			setup = func(h slog.Handler) slog.Handler {
				return h.WithAttrs([]slog.Attr{slog.String(prefixKey, prefixVal), slog.Time(prefixVal, tm)})
			}
		}
		// Then times of the same second, and one without a fraction.
		sameSecond := func(ns int) slog.Record {
			r := slog.NewRecord(tm.Truncate(time.Second).Add(time.Duration(ns)), slog.LevelInfo, msg, 0)
			r.AddAttrs(slog.String(key, val))
			return r
		}
		rs := []slog.Record{r, sameSecond(int(uint64(n) % 1e9)), sameSecond(0), sameSecond(int(uint64(unix) % 1e9))}
		if ours, slogs := bothJSON(t, slog.LevelDebug-10, setup, rs...); ours != slogs {
			t.Errorf("jsonHandler wrote\n%s\nslog's JSONHandler\n%s", ours, slogs)
		}
	})
}

// TestJSONHandlerEscapesAtAnyPosition puts a byte to escape at every
// position of strings of 1 to 24 bytes: appendJSONString checks 8 bytes at a
// time, and the last ones as the string's last 8.
func TestJSONHandlerEscapesAtAnyPosition(t *testing.T) {
	var rs []slog.Record
	for n := 1; n <= 24; n++ {
		for pos := range n {
			for _, c := range []byte{0x00, 0x1f, '"', '\\', 0x7f, 0x80, 0xff} {
				b := bytes.Repeat([]byte("a"), n)
				b[pos] = c
				rs = append(rs, record(slog.LevelInfo, "m", slog.String(string(b[:n/2]), string(b))))
			}
		}
	}
	if ours, slogs := bothJSON(t, slog.LevelInfo, func(h slog.Handler) slog.Handler { return h }, rs...); ours != slogs {
		t.Errorf("jsonHandler wrote\n%s\nslog's JSONHandler\n%s", ours, slogs)
	}
}

func TestJSONSafe8(t *testing.T) {
	safe := func(s string) bool {
		for i := range len(s) {
			if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
				return false
			}
		}
		return true
	}
	check := func(s string) {
		if got, want := jsonSafe8(s), safe(s); got != want {
			t.Fatalf("jsonSafe8(%q) = %v, want %v", s, got, want)
		}
	}
	for c := range 256 {
		for pos := range 8 {
			s := []byte("abcdefgh")
			s[pos] = byte(c)
			check(string(s))
		}
	}
	// Borrows between bytes: every pair of interesting bytes, anywhere.
	interesting := []byte{0x00, 0x01, 0x1f, 0x20, 0x21, '"', '#', '[', '\\', ']', 0x7f, 0x80, 0xa2, 0xdc, 0xff}
	for _, a := range interesting {
		for _, b := range interesting {
			for i := range 8 {
				for j := range 8 {
					s := []byte("abcdefgh")
					s[i], s[j] = a, b
					check(string(s))
				}
			}
		}
	}
}

// BenchmarkJSONHandler formats an RPC line, its shared attributes given
// with WithAttrs as the Logging interceptor gives them, with slog's
// JSONHandler and with kit's.
func BenchmarkJSONHandler(b *testing.B) {
	r := record(slog.LevelInfo, "rpc", slog.String("peer", "127.0.0.1:56430"), slog.String("code", "ok"),
		slog.Duration("duration", 66779), slog.String("request_id", "24d41f84-b342-4607-8b25-afefdd539c27"))
	shared := []slog.Attr{slog.String("kind", "server"), slog.String("procedure", "/connectkit.ping.v1.PingService/Ping"),
		slog.String("stream", "unary"), slog.String("protocol", "connect"), slog.String("http", "HTTP/1.1")}
	for _, c := range []struct {
		name string
		new  func(io.Writer) slog.Handler
	}{
		{"slog", func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) }},
		{"kit", func(w io.Writer) slog.Handler { return newJSONHandler(w, nil) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := c.new(io.Discard).WithAttrs(shared)
			b.ReportAllocs()
			for b.Loop() {
				_ = h.Handle(context.Background(), r)
			}
		})
	}
}

// TestAppendJSONTime holds appendJSONTime to the time package's
// RFC3339Nano, over the years RFC 3339 writes, every kind of zone offset
// and fractions with and without trailing zeros.
func TestAppendJSONTime(t *testing.T) {
	t.Parallel()
	zones := []*time.Location{
		time.UTC, time.Local,
		time.FixedZone("east", 5*3600+30*60), time.FixedZone("west", -(9*3600 + 30*60)),
		time.FixedZone("seconds", -(3600 + 17)), time.FixedZone("under a minute", 59), time.FixedZone("-59s", -59),
		// FixedZone takes any offset: the time package writes hours of
		// three digits and more.
		time.FixedZone("100h", 100*3600), time.FixedZone("-99h59m59s", -(100*3600 - 1)), time.FixedZone("-2^30s", -(1 << 30)),
	}
	if la, err := time.LoadLocation("America/Los_Angeles"); err == nil {
		zones = append(zones, la)
	}
	times := []time.Time{
		time.Unix(0, 0), time.Unix(-1, 0), time.Unix(-86400, 1), time.Unix(86399, 999999999),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(1600, 2, 29, 12, 0, 0, 100, time.UTC), time.Date(1900, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2000, 2, 29, 23, 59, 59, 120000000, time.UTC), time.Date(2026, 12, 7, 0, 12, 20, 63483161, time.UTC),
		time.Date(-1, 12, 31, 23, 0, 0, 0, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Now(),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		sec := rng.Int64N(int64(10002*365.2425*86400)) - int64(1971*365.2425*86400) // years -1 to 10000
		nsec := []int64{0, rng.Int64N(1e9), rng.Int64N(1e3) * 1e6}[rng.IntN(3)]
		times = append(times, time.Unix(sec, nsec))
	}
	var cache timeCache
	for _, base := range times {
		for _, loc := range zones {
			tm := base.In(loc)
			want, wantOK := []byte(`"`+tm.Format(time.RFC3339Nano)+`"`), tm.Year() >= 0 && tm.Year() < 10000
			got, ok := appendJSONTime([]byte("x"), tm)
			if ok != wantOK || ok && string(got) != "x"+string(want) {
				t.Fatalf("appendJSONTime(%v) = %s, %v; want x%s, %v", tm, got, ok, want, wantOK)
			}
			// The cache, on this time and others of its second, in its
			// location (hits) and after other locations' (misses).
			sec := tm.Truncate(time.Second)
			for _, tm := range []time.Time{tm, sec, sec.Add(999999999), sec.Add(500000000), sec.Add(1)} {
				want, wantOK := appendJSONTime([]byte("x"), tm)
				got, ok := cache.appendTime([]byte("x"), tm)
				if ok != wantOK || string(got) != string(want) {
					t.Fatalf("timeCache.appendTime(%v) = %s, %v; want %s, %v", tm, got, ok, want, wantOK)
				}
			}
		}
	}
}
