package discovery

import "errors"

// Exit codes of seed-discovery (docs/design.md, seed-discovery): what the
// pod's events and a restart policy read.
const (
	ExitOK          = 0
	ExitInterrupted = 1
	ExitConfig      = 2
	ExitNoSelf      = 3
	ExitNotStable   = 4
	ExitDNSErrors   = 5
	ExitNotWritable = 6
)

// ExitError carries the process exit code with the reason.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Code maps an error from LoadConfig or Run to the exit code.
func Code(err error) int {
	var exit *ExitError
	var cfg *ConfigError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &exit):
		return exit.Code
	case errors.As(err, &cfg):
		return ExitConfig
	}
	return ExitInterrupted
}

// ConfigError is exit code 2.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return "configuration: " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }
