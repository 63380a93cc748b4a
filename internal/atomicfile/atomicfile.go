// Package atomicfile replaces files so that a reader sees either the old
// content or the new one, never a partly written file.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data and sets its mode to perm. It writes a
// temporary file in path's directory, so the final rename stays on one file
// system and is atomic, then renames it over path. On failure the temporary
// file is removed and path is left as it was. It does not sync to disk:
// its callers rebuild their files when the process restarts.
func Write(path string, data []byte, perm os.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	// CreateTemp makes the file 0600; set perm explicitly so the umask
	// does not change it either.
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
