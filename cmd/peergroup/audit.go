package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/inspect"
)

func audit(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("audit", stderr)
	webhookNS := fs.String("webhook-namespace", "peergroup-system", "the webhook's own namespace, never injected")
	configName := fs.String("webhook-config", defaultWebhookConfig, "name of the MutatingWebhookConfiguration whose entries decide which replacements peergroup is sent (default: peergroup, else the one labelled app.kubernetes.io/name=peergroup)")
	fix := fixFlags(fs)
	output := outputFlag(fs)
	cfg, positional, err := parse(fs, args)
	if err != nil {
		return 2, err
	}
	if len(positional) > 0 {
		return 2, fmt.Errorf("audit: unexpected arguments %q (the namespace is -n NAMESPACE)", positional)
	}
	if err := fix.validate(); err != nil {
		return 2, err
	}
	if err := checkOutput(*output); err != nil {
		return 2, err
	}
	cfg.ExcludedNamespaces = append(cfg.ExcludedNamespaces, *webhookNS)
	c, err := newClient()
	if err != nil {
		return 2, err
	}
	namespaces := &corev1.NamespaceList{}
	if err := c.List(ctx, namespaces); err != nil {
		return 2, fmt.Errorf("list namespaces: %w", err)
	}
	nsLabels := map[string]map[string]string{}
	for _, ns := range namespaces.Items {
		nsLabels[ns.Name] = ns.Labels
	}
	pods := &corev1.PodList{}
	var opts []client.ListOption
	// Every namespace unless -n names one (-A says so too).
	if ns, explicit, err := kube.namespace(); err != nil {
		return 2, err
	} else if explicit && !kube.allNamespaces {
		opts = append(opts, client.InNamespace(ns))
	}
	if err := c.List(ctx, pods, opts...); err != nil {
		return 2, fmt.Errorf("list pods: %w", err)
	}
	cluster, err := auditLookUp(ctx, c, nsLabels, opts, *configName, stderr)
	if err != nil {
		return 2, err
	}
	if fix.Fix {
		return auditFix(ctx, c, auditState{Pods: pods.Items, Cluster: cluster, Config: *cfg, Output: *output}, *fix, stdout)
	}
	findings := inspect.Uninjected(pods.Items, cluster, *cfg)
	if *output == "json" {
		if findings == nil {
			findings = []inspect.Finding{}
		}
		if err := writeJSON(stdout, findings); err != nil {
			return 2, err
		}
	} else {
		printFindings(stdout, findings, len(pods.Items))
	}
	if len(findings) > 0 {
		return 1, nil
	}
	return 0, nil
}

// auditLookUp reads what the webhook decides with besides the pod: the
// Services and LimitRanges of the namespaces audited, and the live webhook
// configuration (a user who may not read it is told, and the entries are
// not matched).
func auditLookUp(ctx context.Context, c client.Client, nsLabels map[string]map[string]string, opts []client.ListOption, configName string, stderr io.Writer) (inspect.AuditCluster, error) {
	cluster := inspect.AuditCluster{NamespaceLabels: nsLabels}
	services := &corev1.ServiceList{}
	if err := c.List(ctx, services, opts...); err != nil {
		return cluster, fmt.Errorf("list services: %w", err)
	}
	limitRanges := &corev1.LimitRangeList{}
	if err := c.List(ctx, limitRanges, opts...); err != nil {
		return cluster, fmt.Errorf("list limitranges: %w", err)
	}
	cluster.Services, cluster.LimitRanges = append([]corev1.Service{}, services.Items...), append([]corev1.LimitRange{}, limitRanges.Items...)
	switch mwc, err := webhookConfig(ctx, c, configName); {
	case err == nil:
		cluster.Webhooks = mwc
	case apierrors.IsNotFound(err):
		// Nothing sends a replacement to peergroup: none is recreated
		// injected (as explain says it).
		cluster.Webhooks = notInstalled(configName)
	case apierrors.IsForbidden(err):
		fmt.Fprintf(stderr, "warning: cannot read MutatingWebhookConfiguration %s (%v): which pods it sends to peergroup is not checked\n", configName, err)
	default:
		return cluster, err
	}
	return cluster, nil
}

// notInstalled stands for a webhook configuration that does not exist: it
// has no entry, so no pod is sent to peergroup, and its name says why.
func notInstalled(name string) *admissionregistrationv1.MutatingWebhookConfiguration {
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	mwc.Name = name + " (not found: peergroup is not installed under this name, --webhook-config)"
	return mwc
}

// defaultWebhookConfig is --webhook-config's default: the chart's name
// for a release named peergroup.
const defaultWebhookConfig = "peergroup"

// webhookConfig reads the MutatingWebhookConfiguration name. The chart
// names it after the release (`helm install pg` makes pg-peergroup), so
// when the default name is not found, the one configuration labelled
// app.kubernetes.io/name=peergroup is taken; several are an error that
// asks for --webhook-config. A NotFound error means there is none.
func webhookConfig(ctx context.Context, c client.Client, name string) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	err := c.Get(ctx, client.ObjectKey{Name: name}, mwc)
	if err == nil || !apierrors.IsNotFound(err) || name != defaultWebhookConfig {
		if err != nil && !apierrors.IsNotFound(err) {
			err = fmt.Errorf("read MutatingWebhookConfiguration %s: %w", name, err)
		}
		return mwc, err
	}
	list := &admissionregistrationv1.MutatingWebhookConfigurationList{}
	if lerr := c.List(ctx, list, client.MatchingLabels{"app.kubernetes.io/name": "peergroup"}); apierrors.IsForbidden(lerr) {
		return nil, err // not allowed to look further: as not found
	} else if lerr != nil {
		return nil, fmt.Errorf("list MutatingWebhookConfigurations labelled app.kubernetes.io/name=peergroup: %w", lerr)
	}
	switch len(list.Items) {
	case 0:
		return nil, err
	case 1:
		return &list.Items[0], nil
	}
	names := make([]string, len(list.Items))
	for i, m := range list.Items {
		names[i] = m.Name
	}
	return nil, fmt.Errorf("%d peergroup webhook configurations (%s): name one with --webhook-config", len(names), strings.Join(names, ", "))
}

func printFindings(w io.Writer, findings []inspect.Finding, checked int) {
	if len(findings) == 0 {
		fmt.Fprintf(w, "%d pods checked: every group member carries the injection\n", checked)
		return
	}
	byNS := map[string][]inspect.Finding{}
	for _, f := range findings {
		byNS[f.Namespace] = append(byNS[f.Namespace], f)
	}
	names := make([]string, 0, len(byNS))
	for ns := range byNS {
		names = append(names, ns)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "%d pods checked: %d group members without the injection (admitted while the webhook was down with failurePolicy Ignore, or created before peergroup was installed); recreate them to inject\n", checked, len(findings))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, ns := range names {
		fmt.Fprintf(tw, "\nnamespace %s\tGROUP\tREASON\n", ns)
		for _, f := range byNS[ns] {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Pod, f.Group, f.Reason)
		}
	}
	tw.Flush()
}
