package certs

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestIssueAndValidate(t *testing.T) {
	ca, caKey, err := NewCA("test-ca", t0, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	names := append(ServiceDNSNames("pg", "sys"), "127.0.0.1")
	cert, _, err := NewServing(ca, caKey, names, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		at      time.Time
		names   []string
		minLeft time.Duration
		ca      []byte
		want    string
	}{
		{name: "valid now", at: t0, names: names},
		{name: "all service names", at: t0.Add(30 * time.Minute), names: []string{"pg.sys.svc", "pg.sys.svc.cluster.local"}},
		{name: "expired", at: t0.Add(2 * time.Hour), names: names, want: "expired"},
		{name: "not yet valid", at: t0.Add(-time.Hour), names: names, want: "not valid"},
		{name: "wrong name", at: t0, names: []string{"other.sys.svc"}, want: `"other.sys.svc"`},
		{name: "too close to expiry", at: t0.Add(50 * time.Minute), names: names, minLeft: 20 * time.Minute, want: "expires in"},
		{name: "other CA", at: t0, names: names, ca: mustCA(t), want: "unknown authority"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bundle := ca
			if tc.ca != nil {
				bundle = tc.ca
			}
			err := Validate(cert, bundle, tc.names, tc.at, tc.minLeft)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
	renew, err := RenewAt(cert)
	if err != nil {
		t.Fatal(err)
	}
	if renew.Before(t0.Add(35*time.Minute)) || renew.After(t0.Add(40*time.Minute)) {
		t.Errorf("renew at %s, want about two thirds into the hour", renew.Sub(t0))
	}
}

func mustCA(t *testing.T) []byte {
	ca, _, err := NewCA("other", t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// testKeeper keeps Secret sys/pg-tls for webhook configuration and Service
// "pg", with a one-hour serving validity, at the time *now.
func testKeeper(t *testing.T, client *fake.Clientset, now *time.Time) *Keeper {
	t.Helper()
	k, err := NewKeeper(KeeperConfig{
		Namespace: "sys", SecretName: "pg-tls", WebhookConfigName: "pg", ServiceName: "pg",
		CertDir: t.TempDir(), Validity: time.Hour, Now: func() time.Time { return *now },
	}, client, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeeperLifecycle(t *testing.T) {
	now := t0
	client := fake.NewClientset(&admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "pg"},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "a.peergroup.dev"}, {Name: "b.peergroup.dev"}},
	})
	k := testKeeper(t, client, &now)
	ctx := context.Background()
	if err := k.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	secret := func() Bundle {
		s, err := client.CoreV1().Secrets("sys").Get(ctx, "pg-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return fromData(s.Data)
	}
	first := secret()
	if err := Validate(first.Cert, first.CACert, ServiceDNSNames("pg", "sys"), now, 0); err != nil {
		t.Fatalf("issued bundle invalid: %v", err)
	}
	mwc, _ := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "pg", metav1.GetOptions{})
	for _, w := range mwc.Webhooks {
		if string(w.ClientConfig.CABundle) != string(first.CACert) {
			t.Errorf("%s caBundle not patched", w.Name)
		}
	}

	// Before two thirds: nothing changes.
	now = t0.Add(30 * time.Minute)
	if err := k.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if secret().Cert == nil || Serial(secret().Cert) != Serial(first.Cert) {
		t.Error("rotated too early")
	}
	// After two thirds: new serving certificate, same CA.
	now = t0.Add(45 * time.Minute)
	if err := k.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	second := secret()
	if Serial(second.Cert) == Serial(first.Cert) || string(second.CACert) != string(first.CACert) {
		t.Error("serving certificate not rotated with the CA kept")
	}
	// CA due (10h life, renewed at ~6.7h): new CA, the old one still trusted.
	now = t0.Add(7 * time.Hour)
	if err := k.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	third := secret()
	if SameCA(third.CACert, first.CACert) {
		t.Fatal("CA not rotated")
	}
	if err := Validate(second.Cert, third.CACert, ServiceDNSNames("pg", "sys"), t0.Add(46*time.Minute), 0); err != nil {
		t.Errorf("old CA dropped from the bundle too early: %v", err)
	}
	if err := Validate(third.Cert, third.CACert, ServiceDNSNames("pg", "sys"), now, 0); err != nil {
		t.Errorf("new certificate invalid: %v", err)
	}
}

// The Secret is owned by the webhook Service, so `helm uninstall` (which
// deletes the Service) leaves no Secret behind; rotation keeps the owner.
func TestKeeperSecretOwner(t *testing.T) {
	service := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "sys", Name: "pg", UID: "svc-uid"}}
	for _, tc := range []struct {
		name    string
		objects []runtime.Object
		getErr  error
		want    []metav1.OwnerReference
		wantErr string
	}{
		{name: "service installed", objects: []runtime.Object{service},
			want: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: "pg", UID: "svc-uid"}}},
		{name: "no service: unowned", want: nil},
		{name: "service unreadable: no Secret", objects: []runtime.Object{service}, getErr: errors.New("connection refused"),
			wantErr: "read the webhook Service sys/pg to own the certificate Secret: connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := t0
			client := fake.NewClientset(tc.objects...)
			if tc.getErr != nil {
				client.PrependReactor("get", "services", func(clienttesting.Action) (bool, runtime.Object, error) { return true, nil, tc.getErr })
			}
			k := testKeeper(t, client, &now)
			ctx := context.Background()
			err := k.SyncCertificate(ctx)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				if _, err := client.CoreV1().Secrets("sys").Get(ctx, "pg-tls", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					t.Fatalf("Secret created anyway (%v)", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, step := range []string{"created", "rotated"} {
				s, err := client.CoreV1().Secrets("sys").Get(ctx, "pg-tls", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(s.OwnerReferences, tc.want) {
					t.Errorf("%s: owners %+v, want %+v", step, s.OwnerReferences, tc.want)
				}
				now = now.Add(50 * time.Minute)
				if err := k.SyncCertificate(ctx); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// MergeCABundle only adds, drops only expired CAs, does not bring back a CA
// about to expire, and writes the same bytes whatever order replicas merge
// in, so no replica's merge undoes another's.
func TestMergeCABundle(t *testing.T) {
	ca := func(start time.Time, life time.Duration) []byte {
		c, _, err := NewCA("ca", start, life)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	old := ca(t0, 10*time.Hour)
	mid := ca(t0.Add(time.Hour), 10*time.Hour)
	young := ca(t0.Add(2*time.Hour), 10*time.Hour)
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	at := t0.Add(3 * time.Hour)
	for _, tc := range []struct {
		name        string
		live, known []byte
		now         time.Time
		want        []byte
	}{
		{name: "empty configuration", known: old, now: at, want: old},
		{name: "new CA added, newest first", live: old, known: cat(mid, old), now: at, want: cat(mid, old)},
		{name: "a replica that knows only the old CA keeps the new one", live: cat(mid, old), known: old, now: at, want: cat(mid, old)},
		{name: "a CA only the configuration has is kept", live: cat(young, old), known: mid, now: at, want: cat(young, mid, old)},
		{name: "reset configuration restored", live: nil, known: cat(old, mid), now: at, want: cat(mid, old)},
		{name: "expired CA dropped", live: cat(young, old), known: cat(young, old), now: t0.Add(10*time.Hour + time.Second), want: young},
		{name: "CA about to expire kept but not put back", live: young, known: cat(young, old), now: t0.Add(10*time.Hour - 30*time.Second), want: young},
		{name: "CA about to expire kept", live: cat(young, old), known: young, now: t0.Add(10*time.Hour - 30*time.Second), want: cat(young, old)},
		{name: "garbage dropped", live: cat([]byte("junk\n"), old), known: old, now: at, want: old},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := MergeCABundle(tc.live, tc.known, tc.now, time.Minute)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("got CAs %v, want %v", serials(got), serials(tc.want))
			}
			if again := MergeCABundle(got, tc.known, tc.now, time.Minute); !bytes.Equal(again, got) {
				t.Errorf("merging again changes the bundle: %v then %v", serials(got), serials(again))
			}
		})
	}
	a, b := cat(mid, old), cat(young)
	ab := MergeCABundle(MergeCABundle(old, a, at, time.Minute), b, at, time.Minute)
	ba := MergeCABundle(MergeCABundle(old, b, at, time.Minute), a, at, time.Minute)
	if !bytes.Equal(ab, ba) {
		t.Errorf("merge order matters: %v vs %v", serials(ab), serials(ba))
	}
}

// Both of peergroup's configurations get the caBundle, so the API server
// trusts the webhook in the mutating and in the validating phase; what
// counts as live (for readiness and for serving a new CA) is only what
// both trust.
func TestKeeperPatchesBothConfigurations(t *testing.T) {
	now := t0
	client := fake.NewClientset(
		&admissionregistrationv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "pg"},
			Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "a.peergroup.dev"}},
		},
		&admissionregistrationv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "pg"},
			Webhooks:   []admissionregistrationv1.ValidatingWebhook{{Name: "a.peergroup.dev"}, {Name: "b.peergroup.dev"}},
		},
		// Another product's configuration of the same name's kind: untouched.
		&admissionregistrationv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "other"},
			Webhooks:   []admissionregistrationv1.ValidatingWebhook{{Name: "x.example.com"}},
		},
	)
	k := testKeeper(t, client, &now)
	ctx := context.Background()
	if err := k.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := client.CoreV1().Secrets("sys").Get(ctx, "pg-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca := fromData(s.Data).CACert
	vwc, _ := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "pg", metav1.GetOptions{})
	for _, w := range vwc.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, ca) {
			t.Errorf("validating entry %s caBundle not patched", w.Name)
		}
	}
	other, _ := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "other", metav1.GetOptions{})
	if len(other.Webhooks[0].ClientConfig.CABundle) != 0 {
		t.Error("another configuration was patched")
	}
	if !bytes.Equal(k.live, ca) {
		t.Errorf("live bundle is not the CA both trust")
	}
}

// What is live is the CAs every configuration holds: one trusted by the
// mutating configuration only is not live.
func TestCommonCAs(t *testing.T) {
	a, b := mustCA(t), mustCA(t)
	for _, tc := range []struct {
		name    string
		bundles [][]byte
		want    []byte
	}{
		{"none", nil, nil},
		{"one configuration", [][]byte{append(append([]byte{}, a...), b...)}, append(append([]byte{}, a...), b...)},
		{"both hold a, one holds b", [][]byte{append(append([]byte{}, a...), b...), a}, a},
		{"nothing in common", [][]byte{a, b}, nil},
	} {
		if got := commonCAs(tc.bundles); !bytes.Equal(got, tc.want) {
			t.Errorf("%s: got %d bytes, want %d", tc.name, len(got), len(tc.want))
		}
	}
}

// RBAC from before the validating configuration (get forbidden), or a
// validating configuration without entries, must not keep the mutating
// configuration's CA from counting as live: readiness would never pass.
func TestKeeperWithoutTheValidatingConfiguration(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*fake.Clientset)
	}{
		{"forbidden", func(c *fake.Clientset) {
			c.PrependReactor("get", "validatingwebhookconfigurations", func(clienttesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewForbidden(admissionregistrationv1.Resource("validatingwebhookconfigurations"), "pg", errors.New("RBAC"))
			})
		}},
		{"no entries", func(c *fake.Clientset) {
			_, _ = c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(context.Background(),
				&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "pg"}}, metav1.CreateOptions{})
		}},
		{"missing", func(*fake.Clientset) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := t0
			client := fake.NewClientset(&admissionregistrationv1.MutatingWebhookConfiguration{
				ObjectMeta: metav1.ObjectMeta{Name: "pg"},
				Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "a.peergroup.dev"}},
			})
			tc.setup(client)
			k := testKeeper(t, client, &now)
			if err := k.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			mwc, _ := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), "pg", metav1.GetOptions{})
			if len(k.live) == 0 || !bytes.Equal(k.live, mwc.Webhooks[0].ClientConfig.CABundle) {
				t.Errorf("live bundle %d bytes, want the mutating configuration's", len(k.live))
			}
		})
	}
}
