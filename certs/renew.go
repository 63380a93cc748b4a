package certs

import (
	"bytes"
	"fmt"
	"time"
)

// Renewal is what Renew made of a bundle.
type Renewal struct {
	Bundle     Bundle
	NewCA      bool
	NewServing bool
	// Unusable says why parts of the old bundle could not be kept although
	// they were not due: they are replaced instead of being used forever.
	Unusable []error
}

// Changed reports whether the bundle differs from the one renewed.
func (r Renewal) Changed(have Bundle) bool {
	b := r.Bundle
	return !bytes.Equal(b.CACert, have.CACert) || !bytes.Equal(b.CAKey, have.CAKey) ||
		!bytes.Equal(b.Cert, have.Cert) || !bytes.Equal(b.Key, have.Key)
}

// Renew keeps what in have is usable at now and not due, and replaces the
// rest: the CA when it is due or cannot sign (a new CA, the old one kept in
// the bundle until it expires, since certificates it signed may still be
// served), the serving certificate when it is due, cannot be loaded, is not
// signed by the signing CA or a new CA was made. Expired CAs are dropped
// from the bundle: nothing they signed verifies any more. Invariant of the
// result: the first CA can sign, and the serving pair loads and verifies
// against it for names.
func Renew(have Bundle, names []string, now time.Time, validity time.Duration) (Renewal, error) {
	r := Renewal{Bundle: have}
	r.Bundle.CACert = AppendUnique(have.CACert, nil, now)
	due, problem := caStatus(have, now)
	if problem != nil {
		r.Unusable = append(r.Unusable, problem)
	}
	if due {
		caCert, caKey, err := NewCA("peergroup-webhook-ca", now, CALifetimeFactor*validity)
		if err != nil {
			return Renewal{}, err
		}
		r.NewCA = true
		r.Bundle = Bundle{CACert: AppendUnique(caCert, have.CACert, now), CAKey: caKey}
	} else {
		due, problem = servingStatus(r.Bundle, names, now)
		if problem != nil {
			r.Unusable = append(r.Unusable, problem)
		}
		if !due {
			return r, nil
		}
	}
	cert, key, err := NewServing(r.Bundle.CACert, r.Bundle.CAKey, names, now, validity)
	if err != nil {
		return Renewal{}, err
	}
	r.NewServing = true
	r.Bundle.Cert, r.Bundle.Key = cert, key
	return r, nil
}

// caStatus: due when the CA is past two thirds of its life; problem (and
// due) when it cannot sign although it is not.
func caStatus(b Bundle, now time.Time) (due bool, problem error) {
	renew, err := RenewAt(b.CACert)
	if err != nil {
		return true, fmt.Errorf("ca.crt: %w", err)
	}
	if !now.Before(renew) {
		return true, nil
	}
	if err := CheckCA(b.CACert, b.CAKey, now); err != nil {
		return true, err
	}
	return false, nil
}

// servingStatus: due when the certificate is past two thirds of its life;
// problem (and due) when it cannot be served although it is not.
func servingStatus(b Bundle, names []string, now time.Time) (due bool, problem error) {
	renew, err := RenewAt(b.Cert)
	if err != nil {
		return true, fmt.Errorf("tls.crt: %w", err)
	}
	if !now.Before(renew) {
		return true, nil
	}
	if err := CheckServing(b.Cert, b.Key, b.CACert, names, now); err != nil {
		return true, err
	}
	return false, nil
}
