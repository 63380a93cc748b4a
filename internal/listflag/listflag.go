// Package listflag reads comma-separated flag values.
package listflag

import "strings"

// Split splits a comma-separated flag value, dropping blanks.
func Split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
