package certs

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// logLines collects a keeper's log lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, prefix+" "+args)
	}, funcr.Options{})
}

func (l *logLines) contain(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

var garbageKey = []byte("-----BEGIN EC PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END EC PRIVATE KEY-----\n")

// A Secret the keeper cannot use is re-issued, and the keeper says so;
// what it serves then loads the way the server loads it, now and at every
// renewal after.
func TestKeeperRecoversUnusableSecret(t *testing.T) {
	names := ServiceDNSNames("pg", "sys")
	other, err := Renew(Bundle{}, names, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		spoil   func(b *Bundle)
		newCA   bool
		problem string
	}{
		{name: "garbage tls.key", spoil: func(b *Bundle) { b.Key = garbageKey }, problem: "do not load as a pair"},
		{name: "tls.key of another certificate", spoil: func(b *Bundle) { b.Key = other.Bundle.Key }, problem: "do not load as a pair"},
		{name: "tls.crt of another CA", spoil: func(b *Bundle) { b.Cert, b.Key = other.Bundle.Cert, other.Bundle.Key }, problem: "not a valid certificate of the signing CA"},
		{name: "garbage ca.key", spoil: func(b *Bundle) { b.CAKey = garbageKey }, newCA: true, problem: "ca.key"},
		{name: "ca.key of another CA", spoil: func(b *Bundle) { b.CAKey = other.Bundle.CAKey }, newCA: true, problem: "ca.key is not the key of ca.crt"},
		{name: "garbage ca.crt", spoil: func(b *Bundle) { b.CACert = []byte("not PEM") }, newCA: true, problem: "ca.crt"},
		{name: "empty Secret", spoil: func(b *Bundle) { *b = Bundle{} }, newCA: true, problem: "no PEM certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := t0
			good, err := Renew(Bundle{}, names, now, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			spoilt := good.Bundle
			tc.spoil(&spoilt)
			client := fake.NewClientset(
				&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "sys", Name: "pg-tls"}, Type: corev1.SecretTypeTLS, Data: toData(spoilt)},
				webhookConfig(),
			)
			var logs logLines
			k := testKeeperLog(t, client, &now, logs.logger())
			ctx := context.Background()
			// Now, and at each renewal after: a spoilt CA key used to
			// fail every Sync from the first renewal on.
			for _, at := range []time.Duration{0, 45 * time.Minute, 90 * time.Minute} {
				now = t0.Add(at)
				if err := k.Sync(ctx); err != nil {
					t.Fatalf("Sync at +%s: %v", at, err)
				}
				if _, err := tls.LoadX509KeyPair(filepath.Join(k.cfg.CertDir, CertKey), filepath.Join(k.cfg.CertDir, KeyKey)); err != nil {
					t.Fatalf("served pair at +%s does not load: %v", at, err)
				}
				s := secret(t, client)
				if err := CheckServing(s.Cert, s.Key, s.CACert, names, now); err != nil {
					t.Fatalf("Secret at +%s still unusable: %v", at, err)
				}
				if err := CheckCA(s.CACert, s.CAKey, now); err != nil {
					t.Fatalf("Secret's CA at +%s cannot sign: %v", at, err)
				}
			}
			s := secret(t, client)
			if got := !SameCA(s.CACert, good.Bundle.CACert); got != tc.newCA {
				t.Errorf("new CA %v, want %v", got, tc.newCA)
			}
			if !logs.contain("certificate Secret unusable; re-issuing") || !logs.contain(tc.problem) {
				t.Errorf("no log line naming the problem %q: %q", tc.problem, logs.lines)
			}
		})
	}
}

func testKeeperLog(t *testing.T, client *fake.Clientset, now *time.Time, log logr.Logger) *Keeper {
	t.Helper()
	k, err := NewKeeper(KeeperConfig{
		Namespace: "sys", SecretName: "pg-tls", WebhookConfigName: "pg", ServiceName: "pg",
		CertDir: t.TempDir(), Validity: time.Hour, Now: func() time.Time { return *now },
	}, client, log)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func webhookConfig() *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "pg"},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "a.peergroup.dev"}, {Name: "b.peergroup.dev"}},
	}
}

func secret(t *testing.T, client *fake.Clientset) Bundle {
	t.Helper()
	s, err := client.CoreV1().Secrets("sys").Get(context.Background(), "pg-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return fromData(s.Data)
}

// Validities past the bounds are refused before anything is issued; the
// longest allowed one issues a CA that is valid (its tenfold lifetime does
// not overflow) and renews at two thirds.
func TestValidityBounds(t *testing.T) {
	for _, tc := range []struct {
		validity, resync time.Duration
		want             string
	}{
		{validity: 262800 * time.Hour, resync: time.Minute, want: "outside"},
		{validity: MaxValidity + time.Hour, resync: time.Minute, want: "outside"},
		{validity: 5 * time.Second, resync: 100 * time.Millisecond, want: "outside"},
		{validity: time.Minute, resync: 10 * time.Second, want: "at least 8 times"},
		{validity: time.Hour, resync: -time.Second, want: "must be positive"},
		{validity: MaxValidity, resync: time.Minute},
		{validity: MinValidity, resync: time.Second},
	} {
		err := CheckValidity(tc.validity, tc.resync)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckValidity(%s, %s) = %v, want %q", tc.validity, tc.resync, err, tc.want)
		}
	}
	if _, err := NewKeeper(KeeperConfig{Namespace: "sys", SecretName: "s", WebhookConfigName: "w", ServiceName: "pg", CertDir: t.TempDir(),
		Validity: 262800 * time.Hour}, fake.NewClientset(), logr.Discard()); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("NewKeeper with a 30-year validity: %v", err)
	}

	names := ServiceDNSNames("pg", "sys")
	r, err := Renew(Bundle{}, names, t0, MaxValidity)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckCA(r.Bundle.CACert, r.Bundle.CAKey, t0); err != nil {
		t.Fatalf("CA of the longest validity: %v", err)
	}
	if err := CheckServing(r.Bundle.Cert, r.Bundle.Key, r.Bundle.CACert, names, t0); err != nil {
		t.Fatalf("certificate of the longest validity: %v", err)
	}
	renew, err := RenewAt(r.Bundle.CACert)
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(CALifetimeFactor * MaxValidity * 2 / 3); renew.Sub(want).Abs() > time.Hour {
		t.Errorf("CA renews at %s, want about %s", renew, want)
	}
}
