package main

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// kube holds kubectl's flags of this command line (run sets it).
var kube = newKubeFlags()

// restConfig is the cluster the kubectl flags name, read the way kubectl
// reads it (KUBECONFIG, ~/.kube/config, in-cluster).
func restConfig() (*rest.Config, error) {
	cfg, err := kube.config.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	return cfg, nil
}

// newClient is a client for the cluster the kubectl flags name.
func newClient() (client.Client, error) {
	cfg, err := restConfig()
	if err != nil {
		return nil, err
	}
	return newClientFor(cfg)
}

func newClientFor(cfg *rest.Config) (client.Client, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}
