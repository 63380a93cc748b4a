package framework

import (
	"slices"
	"testing"
)

// apt-cache depends output, as bookworm prints it: alternatives after " |",
// a virtual package in angle brackets (its providers indented below).
func TestFirstAlternatives(t *testing.T) {
	cases := []struct {
		name, out string
		want      []string
	}{
		{"plain", "redis-server\n  Depends: libc6\n  PreDepends: libssl3\n  Recommends: x\n", []string{"libc6", "libssl3"}},
		{"first of alternatives", "rabbitmq-server\n |Depends: erlang-base\n  Depends: <erlang-base-hipe>\n  Depends: erlang-crypto\n", []string{"erlang-base", "erlang-crypto"}},
		{"virtual first, real second", "x\n |Depends: <java-runtime>\n  Depends: openjdk-17-jre\n  Depends: libc6\n", []string{"openjdk-17-jre", "libc6"}},
		{"virtual alone, providers below", "x\n  Depends: <python3:any>\n    python3\n  Depends: libc6:amd64\n", []string{"libc6"}},
		{"three alternatives", "x\n |Depends: a\n |Depends: b\n  Depends: c\n  Depends: d\n", []string{"a", "d"}},
	}
	for _, c := range cases {
		if got := firstAlternatives([]byte(c.out)); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
