package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "seeds")
	for _, tc := range []struct {
		data string
		perm os.FileMode
	}{{"10.0.0.1\n", 0o644}, {"10.0.0.2,10.0.0.3\n", 0o600}} {
		if err := Write(path, []byte(tc.data), tc.perm); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != tc.data {
			t.Fatalf("content %q, %v; want %q", got, err, tc.data)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != tc.perm {
			t.Fatalf("mode %v, %v; want %v", fi.Mode().Perm(), err, tc.perm)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d entries in the directory, want only the file (temp file left?)", len(entries))
	}
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	// A directory in the way: the rename fails after the temp file exists.
	path := filepath.Join(dir, "seeds")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := Write(path, []byte("x"), 0o644)
	if err == nil || !strings.Contains(err.Error(), "write "+path+":") {
		t.Fatalf("error %v, want one naming %s", err, path)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "seeds" {
		t.Errorf("entries %v: the temp file was not removed", entries)
	}

	missing := filepath.Join(dir, "no-such-dir", "seeds")
	if err := Write(missing, []byte("x"), 0o644); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("error %v, want one naming %s", err, missing)
	}
}
