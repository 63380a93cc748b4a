package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/test/framework"
)

// 1. The Cassandra walkthrough, with the namespace label doing the work.
func TestNamespaceLabelInjectsCassandraAndCreatesService(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{"peergroup.dev/group": "cassandra"})
	pod := cassandraPod(ns, "cassandra-0")
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	requireInjected(t, pod)
	if got := pod.Labels["peergroup.dev/group"]; got != "cassandra" {
		t.Errorf("group label = %q, want it stamped from the namespace", got)
	}
	if got := pod.Spec.InitContainers[0].Image; got != "registry.example/peergroup:e2e" {
		t.Errorf("init container image = %q, want the chart's seed-discovery image", got)
	}
	c := pod.Spec.Containers[0]
	if env := envValues(c, "CASSANDRA_SERVICE"); len(env) != 1 || env[0].Value != "cassandra" {
		t.Errorf("CASSANDRA_SERVICE = %+v, want exactly one with value cassandra", env)
	}
	if env := envValues(c, "POD_NAMESPACE"); len(env) != 1 || env[0].ValueFrom == nil || env[0].ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("POD_NAMESPACE = %+v, want exactly the user's one", env)
	}
	if env := envValues(c, "PEERGROUP_SEEDS_FILE"); len(env) != 1 || env[0].Value != "/var/run/peergroup/seeds" {
		t.Errorf("PEERGROUP_SEEDS_FILE = %+v", env)
	}
	var mounted bool
	for _, m := range c.VolumeMounts {
		if m.Name == "peergroup-seeds" && m.MountPath == "/var/run/peergroup" && m.ReadOnly {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("seeds volume not mounted read-only at /var/run/peergroup: %+v", c.VolumeMounts)
	}

	svc := getService(t, ns, "cassandra")
	if svc == nil {
		t.Fatal("Service cassandra was not created")
	}
	if svc.Spec.ClusterIP != "None" || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("Service is not headless with publishNotReadyAddresses: clusterIP=%q publish=%v", svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
	}
	if svc.Spec.Selector["peergroup.dev/group"] != "cassandra" || svc.Spec.Selector["peergroup.dev/peer"] != "true" || len(svc.Spec.Selector) != 2 {
		t.Errorf("selector = %v", svc.Spec.Selector)
	}
	if svc.Labels["app.kubernetes.io/managed-by"] != "peergroup" || svc.Labels["peergroup.dev/group"] != "cassandra" {
		t.Errorf("labels = %v", svc.Labels)
	}
	want := map[string]int32{"cql": 9042, "thrift": 9160}
	if len(svc.Spec.Ports) != len(want) {
		t.Fatalf("ports = %+v, want cql and thrift", svc.Spec.Ports)
	}
	for _, p := range svc.Spec.Ports {
		if want[p.Name] != p.Port || p.TargetPort != intstr.FromInt32(p.Port) {
			t.Errorf("unexpected port %+v", p)
		}
	}
}

// 2. The pod label alone works; others are untouched.
func TestPodLabelAndNonMembers(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, nil)

	member := plainPod(ns, "member", map[string]string{"peergroup.dev/group": "akka"})
	if err := cluster.Client.Create(ctx, member); err != nil {
		t.Fatal(err)
	}
	requireInjected(t, member)
	if env := envValues(member.Spec.Containers[0], "AKKA_SERVICE"); len(env) != 1 || env[0].Value != "akka" {
		t.Errorf("AKKA_SERVICE = %+v", env)
	}
	if svc := getService(t, ns, "akka"); svc == nil || svc.Spec.Ports[0].Name != "tcp-8080" {
		t.Errorf("Service akka with a derived port name: %+v", svc)
	}

	unlabelled := plainPod(ns, "unlabelled", nil)
	if err := cluster.Client.Create(ctx, unlabelled); err != nil {
		t.Fatal(err)
	}
	requireUntouched(t, unlabelled)

	// Opted out in a labelled namespace, and opted out with a group label.
	labelled := newNamespace(t, map[string]string{"peergroup.dev/group": "redis"})
	optedOut := plainPod(labelled, "opted-out", map[string]string{"peergroup.dev/inject": "false"})
	if err := cluster.Client.Create(ctx, optedOut); err != nil {
		t.Fatal(err)
	}
	requireUntouched(t, optedOut)
	optedOutMember := plainPod(ns, "opted-out-member", map[string]string{"peergroup.dev/group": "other", "peergroup.dev/inject": "false"})
	if err := cluster.Client.Create(ctx, optedOutMember); err != nil {
		t.Fatal(err)
	}
	requireUntouched(t, optedOutMember)
	if got := services(t, labelled); len(got) != 0 {
		t.Errorf("opted-out pod created Services: %v", got)
	}
	if getService(t, ns, "other") != nil {
		t.Error("opted-out member created its Service")
	}

	// The pod's own group wins over the namespace's.
	own := plainPod(labelled, "own-group", map[string]string{"peergroup.dev/group": "elasticsearch"})
	if err := cluster.Client.Create(ctx, own); err != nil {
		t.Fatal(err)
	}
	requireInjected(t, own)
	if own.Labels["peergroup.dev/group"] != "elasticsearch" || getService(t, labelled, "elasticsearch") == nil || getService(t, labelled, "redis") != nil {
		t.Errorf("pod label did not win: labels=%v services=%v", own.Labels, services(t, labelled))
	}
}

// 3. Server-side dry-run: mutated pod back, nothing created.
func TestDryRunCreatesNothing(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{"peergroup.dev/group": "cassandra"})
	pod := cassandraPod(ns, "dry")
	if err := cluster.Client.Create(ctx, pod, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	requireInjected(t, pod)
	if got := services(t, ns); len(got) != 0 {
		t.Errorf("dry-run created Services: %v", got)
	}
	if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{}); !apierrors.IsNotFound(err) {
		t.Errorf("dry-run pod exists: %v", err)
	}
}

// 4. An existing Service of the group's name: headless is used as is, a
// ClusterIP one denies the pod.
func TestExistingServices(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{"peergroup.dev/group": "cassandra"})
	clusterIP := &corev1.Service{}
	clusterIP.Namespace, clusterIP.Name = ns, "cassandra"
	clusterIP.Spec.Ports = []corev1.ServicePort{{Name: "cql", Port: 9042}}
	clusterIP.Spec.Selector = map[string]string{"app": "cassandra"}
	if err := cluster.Client.Create(ctx, clusterIP); err != nil {
		t.Fatal(err)
	}
	err := cluster.Client.Create(ctx, cassandraPod(ns, "denied"))
	if err == nil {
		t.Fatal("pod admitted despite a non-headless Service cassandra")
	}
	for _, want := range []string{"Service " + ns + "/cassandra", "not headless", "clusterIP: None", "peergroup.dev/service"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("denial %q does not mention %q", err, want)
		}
	}
	after := getService(t, ns, "cassandra")
	if after.ResourceVersion != clusterIP.ResourceVersion {
		t.Errorf("non-headless Service was modified: %s -> %s", clusterIP.ResourceVersion, after.ResourceVersion)
	}

	ns2 := newNamespace(t, map[string]string{"peergroup.dev/group": "cassandra"})
	headless := &corev1.Service{}
	headless.Namespace, headless.Name = ns2, "cassandra"
	headless.Spec.ClusterIP = "None"
	headless.Spec.Selector = map[string]string{"app": "cassandra"}
	headless.Labels = map[string]string{"owner": "user"}
	if err := cluster.Client.Create(ctx, headless); err != nil {
		t.Fatal(err)
	}
	pod := cassandraPod(ns2, "uses-existing")
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatalf("pod denied with a headless Service present: %v", err)
	}
	requireInjected(t, pod)
	if after := getService(t, ns2, "cassandra"); after.ResourceVersion != headless.ResourceVersion || after.Labels["owner"] != "user" {
		t.Errorf("headless Service was modified: %+v", after)
	}
}

// 5. Invalid group values are denied with the value quoted.
func TestInvalidGroupDenied(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, nil)
	for _, bad := range []string{"Cassandra", "cass_andra", "1cassandra"} {
		err := cluster.Client.Create(ctx, plainPod(ns, "bad-"+strings.ToLower(strings.ReplaceAll(bad, "_", "")), map[string]string{"peergroup.dev/group": bad}))
		if err == nil {
			t.Errorf("group %q admitted", bad)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) || !strings.Contains(err.Error(), "DNS-1035") {
			t.Errorf("denial for %q does not quote the value and the rule: %v", bad, err)
		}
	}
	pod := plainPod(ns, "bad-service", map[string]string{"peergroup.dev/group": "ok"})
	pod.Annotations = map[string]string{"peergroup.dev/service": "Bad.Name"}
	if err := cluster.Client.Create(ctx, pod); err == nil || !strings.Contains(err.Error(), `"Bad.Name"`) {
		t.Errorf("invalid service annotation: %v", err)
	}
	if got := services(t, ns); len(got) != 0 {
		t.Errorf("denied pods created Services: %v", got)
	}
}

// A member pod that is to run on Windows is refused by the webhook with the
// reason, not by the API server's validation of a container the user never
// wrote (spec.os) nor by its init container failing on the node
// (the kubernetes.io/os node selector); no Service is made for it.
func TestWindowsMemberDenied(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{"peergroup.dev/group": "cassandra"})
	byOS := cassandraPod(ns, "windows-os")
	byOS.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
	bySelector := cassandraPod(ns, "windows-selector")
	bySelector.Spec.NodeSelector = map[string]string{corev1.LabelOSStable: "windows"}
	for pod, want := range map[*corev1.Pod]string{
		byOS:       `the pod sets spec.os.name "windows"; the seed-discovery init container runs on Linux only`,
		bySelector: "the pod selects nodes with kubernetes.io/os=windows; the seed-discovery init container runs on Linux only",
	} {
		if err := cluster.Client.Create(ctx, pod); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("pod %s: %v, want a denial saying %q", pod.Name, err, want)
		}
	}
	if got := services(t, ns); len(got) != 0 {
		t.Errorf("denied pods created Services: %v", got)
	}
	linux := cassandraPod(ns, "linux")
	linux.Spec.OS = &corev1.PodOS{Name: corev1.Linux}
	if err := cluster.Client.Create(ctx, linux); err != nil {
		t.Fatalf("a pod declaring linux: %v", err)
	}
	requireInjected(t, linux)
}

// 6. The service annotation renames the Service and the env value.
func TestServiceAnnotation(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{"peergroup.dev/group": "cassandra"})
	pod := cassandraPod(ns, "renamed")
	pod.Annotations = map[string]string{"peergroup.dev/service": "cassandra-peers"}
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if env := envValues(pod.Spec.Containers[0], "CASSANDRA_SERVICE"); len(env) != 1 || env[0].Value != "cassandra-peers" {
		t.Errorf("CASSANDRA_SERVICE = %+v", env)
	}
	if getService(t, ns, "cassandra-peers") == nil || getService(t, ns, "cassandra") != nil {
		t.Errorf("services = %v", services(t, ns))
	}
}

// 7. A burst of pods of a new group: all admitted, one Service.
func TestParallelCreatesMakeOneService(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{"peergroup.dev/group": "burst"})
	const n = 40
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := cassandraPod(ns, fmt.Sprintf("burst-%d", i))
			if err := cluster.Client.Create(ctx, pod); err != nil {
				errs <- err
				return
			}
			if initContainerCount(pod, "seed-discovery") != 1 {
				errs <- fmt.Errorf("pod %s not injected", pod.Name)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := services(t, ns); len(got) != 1 || got[0].Name != "burst" {
		t.Errorf("services after burst = %d, want exactly Service burst", len(got))
	}
}

// 8. Registered twice (the API server calls both, and reinvokes): nothing
// is duplicated.
func TestRegisteredTwiceDuplicatesNothing(t *testing.T) {
	ctx := testContext(t)
	second, err := framework.RegisterWebhook(ctx, cluster, rendered, hook.URL(), hook.CABundle, framework.NameSuffix("-second"))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Delete(context.Background(), cluster)
	ns := newNamespace(t, map[string]string{"peergroup.dev/group": "cassandra"})
	// Give the API server time to pick up the second configuration: wait
	// until dry-run creates go through both (they are identical, so poll
	// the real create a few times instead).
	if err := framework.WaitForInjection(ctx, cluster, ns); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		pod := cassandraPod(ns, fmt.Sprintf("twice-%d", i))
		if err := cluster.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		requireInjected(t, pod)
		c := pod.Spec.Containers[0]
		for _, name := range []string{"CASSANDRA_SERVICE", "POD_NAMESPACE", "PEERGROUP_SEEDS_FILE"} {
			if n := len(envValues(c, name)); n != 1 {
				t.Errorf("%s appears %d times", name, n)
			}
		}
		if len(pod.Spec.Volumes) != 1 || len(c.VolumeMounts) != 1 {
			t.Errorf("volumes %v mounts %v", pod.Spec.Volumes, c.VolumeMounts)
		}
	}
}

// 9. Pod Security restricted admits an injected, otherwise compliant pod.
func TestRestrictedPodSecurityAdmitsInjectedPod(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{
		"peergroup.dev/group":                "cassandra",
		"pod-security.kubernetes.io/enforce": "restricted",
	})
	pod := cassandraPod(ns, "restricted")
	yes, no := true, false
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{
		RunAsNonRoot:   &yes,
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
		AllowPrivilegeEscalation: &no,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatalf("restricted namespace refused the injected pod: %v", err)
	}
	requireInjected(t, pod)

	// The same pod without its own compliance is refused, proving the
	// profile is enforced here.
	bad := cassandraPod(ns, "not-compliant")
	if err := cluster.Client.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Errorf("non-compliant pod: %v", err)
	}
}

// 10. Malformed AdmissionReviews get a 4xx with a clear message.
func TestMalformedAdmissionReviews(t *testing.T) {
	httpc := hook.TLSClient()
	cases := []struct {
		name, contentType, body string
		code                    int
		message                 string
	}{
		{"empty", "application/json", "", 400, "empty"},
		{"not json", "application/json", "{not json", 400, "not a JSON AdmissionReview"},
		{"wrong content type", "text/plain", "{}", 415, "application/json"},
		{"wrong kind", "application/json", `{"apiVersion":"v1","kind":"Pod"}`, 400, `kind "Pod"`},
		{"v1beta1", "application/json", `{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}`, 400, "admission.k8s.io/v1beta1"},
		{"no request", "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, 400, "no request"},
		{"no object", "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"default"}}`, 200, "no object"},
		{"wrong resource", "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"CREATE","object":{}}}`, 200, "only v1 Pod"},
		{"pod not an object", "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"default","object":{"spec":{"containers":"nope"}}}}`, 400, "cannot unmarshal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := httpc.Post(hook.URL(), tc.contentType, bytes.NewBufferString(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.code, body)
			}
			review := admissionv1.AdmissionReview{}
			if err := json.Unmarshal(body, &review); err != nil || review.Response == nil || review.Response.Result == nil {
				t.Fatalf("answer is not an AdmissionReview with a result: %s", body)
			}
			result := review.Response.Result
			if !strings.Contains(result.Message, tc.message) {
				t.Errorf("message %q does not mention %q", result.Message, tc.message)
			}
			// Well-formed reviews about bad objects are answered inside
			// the review: not allowed, result code 400.
			if review.Response.Allowed || result.Code != 400 && result.Code != int32(tc.code) {
				t.Errorf("answer is not a refusal with a 4xx code: %s", body)
			}
		})
	}
	// The server survived all of it.
	resp, err := httpc.Get(hook.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET status %d, want 405", resp.StatusCode)
	}
}
