package clip

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// Values in messages are cut to maxQuoted bytes on a rune boundary: an
// ASCII value keeps exactly maxQuoted bytes, a multi-byte one ends on a
// whole rune, and short values stay whole.
func TestHeadCutsOnARuneBoundary(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int // bytes of the head
	}{
		{strings.Repeat("a", 100), maxQuoted},
		{strings.Repeat("é", 50), maxQuoted},     // 2-byte runes: 80 is a boundary
		{strings.Repeat("€", 30), maxQuoted - 2}, // 3-byte runes: 78 is the last boundary
	} {
		h := head(tc.in)
		if len(h) != tc.want || !utf8.ValidString(h) || !strings.HasPrefix(tc.in, h) {
			t.Errorf("head of %d bytes of %q…: %d bytes %q, want %d valid bytes", len(tc.in), tc.in[:4], len(h), h, tc.want)
		}
		if c := String(tc.in); !strings.HasPrefix(c, h+"…") || !strings.HasSuffix(c, fmt.Sprintf("(%d bytes)", len(tc.in))) {
			t.Errorf("String = %q", c)
		}
	}
	if String("short") != "short" || Quote("short") != `"short"` {
		t.Error("a short value was cut")
	}
}

// A value of exactly the bound is quoted whole.
func TestBoundQuotedWhole(t *testing.T) {
	if q := Quote(strings.Repeat("x", maxQuoted)); q != `"`+strings.Repeat("x", maxQuoted)+`"` {
		t.Errorf("a value of exactly the bound is quoted whole: %s", q)
	}
}
