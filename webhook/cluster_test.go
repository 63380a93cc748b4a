package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
)

// namespaceReader answers Gets of PartialObjectMetadata with labels, or
// with err.
type namespaceReader struct {
	labels map[string]string
	err    error
	gets   int
}

func (r *namespaceReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	r.gets++
	if r.err != nil {
		return r.err
	}
	obj.(*metav1.PartialObjectMetadata).Labels = r.labels
	return nil
}

func (r *namespaceReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return nil
}

// A namespace created moments ago may not be in the informer cache yet:
// its labels come from a live read, which is why the chart grants get on
// namespaces.
func TestCachedNamespaceLabelsFallsBackToLiveRead(t *testing.T) {
	notCached := apierrors.NewNotFound(corev1.Resource("namespaces"), "new")
	cases := []struct {
		name        string
		cache, live *namespaceReader
		want        string
		err         string
		liveReads   int
	}{
		{"cached", &namespaceReader{labels: map[string]string{contract.GroupLabel: "a"}}, &namespaceReader{}, "a", "", 0},
		{"not cached yet", &namespaceReader{err: notCached}, &namespaceReader{labels: map[string]string{contract.GroupLabel: "b"}}, "b", "", 1},
		{"gone", &namespaceReader{err: notCached}, &namespaceReader{err: notCached}, "", "read labels of namespace new", 1},
		{"cache broken", &namespaceReader{err: errors.New("boom")}, &namespaceReader{}, "", "boom", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := &CachedNamespaceLabels{Cache: tc.cache, Live: tc.live}
			labels, err := n.Labels(context.Background(), "new")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
			} else if err != nil || labels[contract.GroupLabel] != tc.want {
				t.Fatalf("labels %v, %v; want group %q", labels, err, tc.want)
			}
			if tc.live.gets != tc.liveReads {
				t.Errorf("%d live reads, want %d", tc.live.gets, tc.liveReads)
			}
		})
	}
}

// kubectl label ns X peergroup.dev/group=g, then at once a pod: the API
// server already calls the webhook (its selector sees the label) while the
// informer cache does not yet. The webhook asks the API server before
// admitting the pod uninjected; a namespace the cache knows to be a member
// costs no live read.
func TestStaleNamespaceCacheReadsLive(t *testing.T) {
	cases := []struct {
		name        string
		cache, live *namespaceReader
		podLabels   map[string]string
		injected    bool
		liveReads   int
	}{
		{"cache behind", &namespaceReader{}, &namespaceReader{labels: map[string]string{contract.GroupLabel: "g"}}, nil, true, 1},
		{"cache current", &namespaceReader{labels: map[string]string{contract.GroupLabel: "g"}}, &namespaceReader{}, nil, true, 0},
		{"really not a member", &namespaceReader{}, &namespaceReader{}, nil, false, 1},
		{"own label", &namespaceReader{}, &namespaceReader{}, map[string]string{contract.GroupLabel: "g"}, true, 0},
		{"opted out", &namespaceReader{}, &namespaceReader{labels: map[string]string{contract.GroupLabel: "g"}}, map[string]string{contract.InjectLabel: "false"}, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := testHandler(&CachedNamespaceLabels{Cache: tc.cache, Live: tc.live}, newFakeClient())
			raw, _ := json.Marshal(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: tc.podLabels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}})
			resp := handle(h, podRequest(raw, admissionv1.Create, false))
			if !resp.Allowed || (len(resp.Patch) > 0) != tc.injected {
				t.Errorf("allowed=%v patched=%v, want injected=%v: %+v", resp.Allowed, len(resp.Patch) > 0, tc.injected, resp.Result)
			}
			if tc.live.gets != tc.liveReads {
				t.Errorf("%d live reads, want %d", tc.live.gets, tc.liveReads)
			}
		})
	}
}
