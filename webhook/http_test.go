package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// The one-pass decode (DecodePod, direct patch) and the reference path
// (raw object, diff patch) answer with patches that yield the same pod.
func TestHTTPHandlerDecodeModesAgree(t *testing.T) {
	raw, _ := json.Marshal(benchPod())
	areq := podRequest(raw, admissionv1.Create, false).AdmissionRequest
	body, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: &areq})
	var pods []*corev1.Pod
	for _, mode := range []PatchMode{PatchDirect, PatchDiff} {
		h := testHandler(staticNamespaces(nil), newFakeClient())
		h.Config.PatchMode = mode
		srv := &HTTPHandler{Webhook: &admission.Webhook{Handler: h}, DecodePod: mode == PatchDirect}
		req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		out := admissionv1.AdmissionReview{}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 || !out.Response.Allowed || out.Response.UID != "uid-1" {
			t.Fatalf("%s: %d %s", mode, rec.Code, rec.Body)
		}
		patch, err := jsonpatch.DecodePatch(out.Response.Patch)
		if err != nil {
			t.Fatal(err)
		}
		patched, err := patch.Apply(raw)
		if err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{}
		_ = json.Unmarshal(patched, pod)
		pods = append(pods, pod)
	}
	if !IsInjected(pods[0]) || !equality.Semantic.DeepEqual(pods[0], pods[1]) {
		t.Error("decode modes disagree")
	}
}

// FuzzAdmittedPodEquivalence: for any pod, decoding only the admitted
// fields gives the same answer as decoding the whole pod: the same direct
// patch byte for byte, the same warnings, the same error, the same Service.
func FuzzAdmittedPodEquivalence(f *testing.F) {
	for _, p := range fixturePods(f) {
		f.Add(p, "")
		f.Add(p, "cassandra")
	}
	f.Add([]byte(`{"metadata":{"name":"x","labels":{"peergroup.dev/group":"g"},"ownerReferences":[{"apiVersion":"v1","kind":"ReplicationController","name":"rc","uid":"u","controller":true}]},"spec":{"dnsPolicy":"ClusterFirst","volumes":[{"name":"peergroup-seeds","hostPath":{"path":"/"}}],"containers":[{"name":"a","image":"x","resources":{"limits":{"cpu":"1"}},"env":[{"name":"G_SERVICE","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}]}]}}`), "")
	f.Add([]byte(`{"metadata":{"labels":{"peergroup.dev/group":"g"}},"spec":{"os":{"name":"windows"},"containers":[{"name":"a"}]}}`), "")
	f.Add([]byte(`{"spec":{"nodeSelector":{"kubernetes.io/os":"windows","zone":"a"},"containers":[{"name":"a"}]}}`), "g")
	f.Fuzz(func(t *testing.T, raw []byte, nsGroup string) {
		full := &corev1.Pod{}
		if err := json.Unmarshal(raw, full); err != nil {
			return
		}
		admitted := &admittedPod{}
		if err := json.Unmarshal(raw, admitted); err != nil {
			t.Fatalf("the whole pod decodes but the admitted fields do not: %v", err)
		}
		slim := admitted.pod()
		var nsLabels map[string]string
		if nsGroup != "" {
			nsLabels = map[string]string{GroupLabel: nsGroup}
		}
		mFull, errFull := ResolveGroup(full, nsLabels)
		mSlim, errSlim := ResolveGroup(slim, nsLabels)
		if fmt.Sprint(mFull, errFull) != fmt.Sprint(mSlim, errSlim) {
			t.Fatalf("membership differs: %v %v vs %v %v", mFull, errFull, mSlim, errSlim)
		}
		if errFull != nil || !mFull.Member() {
			return
		}
		if IsInjected(full) != IsInjected(slim) {
			t.Fatal("IsInjected differs")
		}
		cfg := DefaultConfig()
		outFull, warnFull, errFull := Mutate(full, mFull, cfg)
		outSlim, warnSlim, errSlim := Mutate(slim, mSlim, cfg)
		if fmt.Sprint(warnFull, errFull) != fmt.Sprint(warnSlim, errSlim) {
			t.Fatalf("warnings or errors differ: %v %v vs %v %v", warnFull, errFull, warnSlim, errSlim)
		}
		if errFull != nil {
			return
		}
		pFull, e1 := DirectPatch(full, outFull)
		pSlim, e2 := DirectPatch(slim, outSlim)
		if !bytes.Equal(pFull, pSlim) || fmt.Sprint(e1) != fmt.Sprint(e2) {
			t.Fatalf("patches differ:\n%s\n%s", pFull, pSlim)
		}
		if !equality.Semantic.DeepEqual(DesiredService(full, "ns", mFull), DesiredService(slim, "ns", mSlim)) {
			t.Fatal("desired Services differ")
		}
	})
}
