package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/certs"
)

// `helm uninstall` deletes the chart's webhook Service but knows nothing of
// the selfSigned certificate Secret, which the webhook creates at run time.
// The Secret is owned by that Service, so kube-controller-manager's garbage
// collector deletes it with the release; while the Service stays (upgrades),
// so does the Secret.
func TestUninstallDeletesCertificateSecret(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, nil)
	service := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "release-peergroup"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443}}},
	}
	if err := lc.Client.Create(ctx, service); err != nil {
		t.Fatal(err)
	}
	clientset, err := kubernetes.NewForConfig(lc.Config)
	if err != nil {
		t.Fatal(err)
	}
	keeper, err := certs.NewKeeper(certs.KeeperConfig{
		Namespace: ns, SecretName: "release-peergroup-tls", WebhookConfigName: "release-peergroup", ServiceName: service.Name,
		CertDir: t.TempDir(), Validity: time.Hour,
	}, clientset, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if err := keeper.SyncCertificate(ctx); err != nil {
		t.Fatal(err)
	}
	secretKey := client.ObjectKey{Namespace: ns, Name: "release-peergroup-tls"}
	secretGone := func(ctx context.Context) (bool, error) {
		err := lc.Client.Get(ctx, secretKey, &corev1.Secret{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	}
	// The garbage collector has had time to act on the Secret's owner.
	time.Sleep(3 * time.Second)
	if gone, err := secretGone(ctx); err != nil || gone {
		t.Fatalf("Secret gone %v (%v) while its Service exists", gone, err)
	}

	if err := lc.Client.Delete(ctx, service); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, secretGone); err != nil {
		t.Fatalf("Secret still there a minute after its Service was deleted: %v", err)
	}
}
