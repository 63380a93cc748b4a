package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// --version prints the stamped version and starts nothing: no flags, no
// environment, no API server needed.
func TestVersion(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "v1.2.3-test"
	for _, arg := range []string{"--version", "-version"} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{arg}, &out); err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		if out.String() != "v1.2.3-test\n" {
			t.Errorf("%s printed %q, want the version alone on its line", arg, out.String())
		}
	}
}

func TestVersionTakesNoArguments(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--version", "--port=1"}, &out)
	if err == nil || !strings.Contains(err.Error(), "no other arguments") || out.Len() > 0 {
		t.Fatalf("err %v, output %q: want a usage error and no output", err, out.String())
	}
}
