package faults

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/test/framework"
	"github.com/peergroup/peergroup/webhook/admit"
)

// isolationLabel keeps each test's webhook configuration to its own
// namespaces.
const isolationLabel = "faults.peergroup.dev/test"

func testContext(t *testing.T) context.Context { return framework.TestContext(t, 3*time.Minute) }

// register registers the chart's webhook configurations, pointed at url and
// limited to namespaces labelled isolationLabel=id; tweak changes each entry.
func register(t *testing.T, id, url string, caBundle []byte, tweak func(*admissionregistrationv1.MutatingWebhook), opts ...framework.RegisterOption) *framework.Registration {
	t.Helper()
	isolate := func(w *admissionregistrationv1.MutatingWebhook) {
		if w.NamespaceSelector == nil {
			w.NamespaceSelector = &metav1.LabelSelector{}
		}
		if w.NamespaceSelector.MatchLabels == nil {
			w.NamespaceSelector.MatchLabels = map[string]string{}
		}
		w.NamespaceSelector.MatchLabels[isolationLabel] = id
	}
	opts = append([]framework.RegisterOption{framework.NameSuffix("-" + id), framework.Tweak(isolate), framework.Tweak(tweak)}, opts...)
	reg, err := framework.RegisterWebhook(context.Background(), cluster, rendered, url, caBundle, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Delete(context.Background(), cluster) })
	return reg
}

// namespace creates a namespace of test id, with a namespace group label
// when group is set, and waits until the test's webhook answers there.
func namespace(t *testing.T, id, group string) string {
	t.Helper()
	labels := map[string]string{isolationLabel: id}
	if group != "" {
		labels[contract.GroupLabel] = group
	}
	ns := framework.NewTestNamespace(t, cluster, labels)
	if err := framework.WaitForInjection(testContext(t), cluster, ns); err != nil {
		t.Fatal(err)
	}
	return ns
}

func memberPod(ns, name, group string) *corev1.Pod {
	p := &corev1.Pod{}
	p.Namespace, p.Name = ns, name
	if group != "" {
		p.Labels = map[string]string{contract.GroupLabel: group}
	}
	p.Spec.Containers = []corev1.Container{{Name: "app", Image: "registry.example/app:1", Ports: []corev1.ContainerPort{{Name: "gossip", ContainerPort: 7000}}}}
	return p
}

func services(t *testing.T, ns string) []corev1.Service { return cluster.Services(t, ns) }

func pods(t *testing.T, ns string) []corev1.Pod { return cluster.Pods(t, ns) }

func serviceNames(svcs []corev1.Service) []string {
	var names []string
	for _, s := range svcs {
		names = append(names, s.Name)
	}
	return names
}

// requireNothingUninjected: every pod that exists in ns carries the
// injection, so no member was admitted half-done.
func requireNothingUninjected(t *testing.T, ns string) int {
	t.Helper()
	all := pods(t, ns)
	for i := range all {
		if !admit.IsInjected(&all[i]) {
			t.Errorf("pod %s/%s was admitted without the injection", ns, all[i].Name)
		}
	}
	return len(all)
}

func chartIdentity() *rest.Config {
	return framework.ServiceAccountConfig(cluster.Config, releaseNamespace, "peergroup")
}

// startHook runs the webhook in this process with the chart's args and cfg
// as its client config.
func startHook(t *testing.T, cfg *rest.Config, extraArgs ...string) *framework.Webhook {
	t.Helper()
	w, err := framework.StartWebhook(testContext(t), cluster, rendered, releaseNamespace, framework.As(cfg), framework.Args(extraArgs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w
}

// throughProxy is cfg with the API server reached through p.
func throughProxy(cfg *rest.Config, p *framework.Proxy) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Host = "https://" + p.Addr()
	return c
}

func startProxy(t *testing.T, targets ...string) *framework.Proxy {
	t.Helper()
	p, err := framework.StartProxy(targets...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func apiServerAddr() string {
	u, err := url.Parse(cluster.Config.Host)
	if err != nil || u.Host == "" {
		panic(fmt.Sprintf("unexpected API server URL %q", cluster.Config.Host))
	}
	return u.Host
}
