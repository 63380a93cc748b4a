package chart

import (
	"bytes"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/peergroup/peergroup/test/framework"
	"github.com/peergroup/peergroup/webhook/server"
)

const testCAPEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func withClientAuth(values map[string]any, clientAuth map[string]any) map[string]any {
	out := map[string]any{"clientAuth": clientAuth}
	for k, v := range values {
		out[k] = v
	}
	return out
}

// clientAuth renders in every certificate mode: the webhook's args require
// the CA mounted from the ConfigMap, with the accepted names.
func TestClientAuthRendered(t *testing.T) {
	for name, values := range modes {
		t.Run(name, func(t *testing.T) {
			r := render(t, withClientAuth(values, map[string]any{"enabled": true, "caBundle": testCAPEM, "allowedNames": []any{"kube-apiserver-webhook-client", "apiserver"}}))
			args, err := framework.DeploymentArgs(r)
			if err != nil {
				t.Fatal(err)
			}
			o, err := server.ParseFlags(args, func(string) string { return "peergroup-system" }, "v", &bytes.Buffer{})
			if err != nil {
				t.Fatalf("chart args %q: %v", args, err)
			}
			if o.ClientAuth.CAFile != "/etc/peergroup/client-ca/ca.crt" || strings.Join(o.ClientAuth.Names, ",") != "kube-apiserver-webhook-client,apiserver" {
				t.Errorf("client auth %+v", o.ClientAuth)
			}
			cm := r.Find("ConfigMap", "peergroup-client-ca")
			if cm == nil {
				t.Fatalf("no ConfigMap peergroup-client-ca: %v", r.Kinds())
			}
			if data, _, _ := unstructuredString(cm.Object, "data", "ca.crt"); data != testCAPEM {
				t.Errorf("ca.crt %q", data)
			}
			requireClientCAMounted(t, r, "peergroup-client-ca")
		})
	}
}

func unstructuredString(obj map[string]any, path ...string) (string, bool, error) {
	cur := any(obj)
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[p]
	}
	s, ok := cur.(string)
	return s, ok, nil
}

func requireClientCAMounted(t *testing.T, r *framework.Rendered, configMap string) {
	t.Helper()
	u := r.Find("Deployment", "peergroup")
	dep := &appsv1.Deployment{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, dep); err != nil {
		t.Fatal(err)
	}
	var vol *corev1.Volume
	for i, v := range dep.Spec.Template.Spec.Volumes {
		if v.Name == "client-ca" {
			vol = &dep.Spec.Template.Spec.Volumes[i]
		}
	}
	if vol == nil || vol.ConfigMap == nil || vol.ConfigMap.Name != configMap {
		t.Fatalf("client-ca volume %+v, want ConfigMap %s", vol, configMap)
	}
	for _, m := range dep.Spec.Template.Spec.Containers[0].VolumeMounts {
		if m.Name == "client-ca" {
			if m.MountPath != "/etc/peergroup/client-ca" || !m.ReadOnly {
				t.Errorf("client-ca mount %+v", m)
			}
			return
		}
	}
	t.Error("client-ca not mounted in the webhook container")
}

func TestClientAuthExistingConfigMap(t *testing.T) {
	r := render(t, withClientAuth(nil, map[string]any{"enabled": true, "existingConfigMap": "apiserver-client-ca"}))
	if r.Find("ConfigMap", "") != nil {
		t.Errorf("a ConfigMap rendered beside existingConfigMap: %v", r.Kinds())
	}
	requireClientCAMounted(t, r, "apiserver-client-ca")
}

func TestClientAuthOffByDefault(t *testing.T) {
	r := render(t, nil)
	args, err := framework.DeploymentArgs(r)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(args, " "), "--client-ca-file") || r.Find("ConfigMap", "") != nil {
		t.Errorf("client certificates required by default: %q", args)
	}
}

func TestClientAuthBadValues(t *testing.T) {
	cases := map[string]map[string]any{
		"clientAuth.enabled needs clientAuth.caBundle or clientAuth.existingConfigMap": withClientAuth(nil, map[string]any{"enabled": true}),
		"additional properties 'ca' not allowed":                                       withClientAuth(nil, map[string]any{"enabled": true, "ca": "x"}),
		"minLength: got 0, want 1":                                                     withClientAuth(nil, map[string]any{"enabled": true, "caBundle": testCAPEM, "allowedNames": []any{""}}),
		"/clientAuth/allowedNames/0":                                                   withClientAuth(nil, map[string]any{"enabled": true, "caBundle": testCAPEM, "allowedNames": []any{" "}}),
		"/clientAuth/allowedNames/1":                                                   withClientAuth(nil, map[string]any{"enabled": true, "caBundle": testCAPEM, "allowedNames": []any{"a", "b,c"}}),
		"set caBundle or existingConfigMap, not both":                                  withClientAuth(nil, map[string]any{"enabled": true, "caBundle": testCAPEM, "existingConfigMap": "x"}),
		"clientAuth.caBundle must be PEM":                                              withClientAuth(nil, map[string]any{"enabled": true, "caBundle": "Y2E="}),
	}
	for want, values := range cases {
		if _, err := framework.Render("peergroup", "peergroup-system", values); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("values %v: error %v, want %q", values, err, want)
		}
	}
}
