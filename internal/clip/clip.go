// Package clip cuts a user's value for a message, a log line or an Event:
// admission runs before the API server validates a pod, so a label,
// annotation or name may be megabytes long.
package clip

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// maxQuoted bounds how much of a user's value a message repeats: enough to
// recognise it, never enough to make a denial, a log line or an Event as
// large as the value. Mutating admission runs before the API server
// validates the pod, so a label, annotation or name may be megabytes long.
const maxQuoted = 80

// Quote is %q of s cut to maxQuoted bytes, followed by the whole length
// when it was cut.
func Quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(head(s)), len(s))
}

// String is s cut like Quote, for values a message or a log line prints
// bare.
func String(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	return fmt.Sprintf("%s… (%d bytes)", head(s), len(s))
}

// head is s's first maxQuoted bytes, ending on a rune boundary.
func head(s string) string {
	cut := s[:maxQuoted]
	for len(cut) > 0 && !utf8.ValidString(cut) {
		cut = cut[:len(cut)-1]
	}
	return cut
}
