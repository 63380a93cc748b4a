package webhook

import (
	"context"
	"errors"
	"strings"
	"testing"

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
