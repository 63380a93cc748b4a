package certs

import (
	"errors"
	"fmt"
	"time"
)

// CALifetimeFactor is how many serving validities the CA lives: the CA, and
// with it the caBundle, changes ten times less often than the certificate.
const CALifetimeFactor = 10

// Bounds of the serving validity (--cert-validity). The chart's schema is
// stricter below (certificates.selfSigned.certValidity: 1h to 87600h, whole
// hours), since the chart runs the default one-minute resync; the flag also
// serves tests and demos that rotate in seconds with a short resync.
const (
	// MinValidity leaves room for a handshake, a resync and the API
	// server's reload of the caBundle inside a third of the validity.
	MinValidity = 10 * time.Second
	// MaxValidity is ten years. The CA lives CALifetimeFactor times longer,
	// a century, which fits time.Duration (about 292 years) with room for
	// the arithmetic on it, and x509's GeneralizedTime (to the year 9999).
	// 30 years (262800h) would make a 300-year CA: time.Duration overflows,
	// the CA is born expired and the webhook never becomes ready.
	MaxValidity = 10 * 365 * 24 * time.Hour
	// resyncsPerValidity: renewal is due at two thirds of the validity, and
	// the remaining third must hold two resyncs (one to notice, one more
	// after a new CA's trust delay) plus that delay (at most validity/20):
	// validity/3 >= 2*resync + validity/20 needs validity >= 7.1 resyncs.
	resyncsPerValidity = 8
)

// CheckValidity says why a serving validity cannot be kept with a resync
// interval; nil means it can.
func CheckValidity(validity, resync time.Duration) error {
	var errs []error
	if validity < MinValidity || validity > MaxValidity {
		errs = append(errs, fmt.Errorf("--cert-validity %s is outside %s to %s (the CA lives %dx longer and must fit a time.Duration)",
			validity, MinValidity, hours(MaxValidity), CALifetimeFactor))
	}
	if resync <= 0 {
		errs = append(errs, fmt.Errorf("--cert-resync-interval %s must be positive", resync))
	} else if validity/resyncsPerValidity < resync {
		errs = append(errs, fmt.Errorf("--cert-validity %s must be at least %d times --cert-resync-interval %s, so a certificate is replaced before it expires",
			validity, resyncsPerValidity, resync))
	}
	return errors.Join(errs...)
}

// trustDelay is how long a new CA must have been in the live caBundle
// before this replica serves a certificate it signed: the API server loads
// webhook configurations through a watch, so a patched caBundle takes a
// moment to be used. Capped at a twentieth of the validity so it does not
// eat a short test validity.
func trustDelay(validity time.Duration) time.Duration {
	return min(5*time.Second, validity/20)
}

func hours(d time.Duration) string { return fmt.Sprintf("%dh", d/time.Hour) }
