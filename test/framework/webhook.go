package framework

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/peergroup/peergroup/webhook/server"
)

// Webhook is a peergroup webhook server running in this process, started
// with the chart's Deployment args and serving on 127.0.0.1.
type Webhook struct {
	Port      int
	CertDir   string
	CABundle  []byte
	ProbeAddr string
	Options   server.Options
	// Args is the command line of a webhook run as a process.
	Args []string
	// Cmd is the process, for a webhook run as a process.
	Cmd    *exec.Cmd
	cancel context.CancelFunc
	done   chan error
}

// URL is the loopback admission URL the API server is given (DESIGN.md
// section 5: never a Service reference).
func (w *Webhook) URL() string {
	return fmt.Sprintf("https://127.0.0.1:%d/mutate-v1-pod", w.Port)
}

// DeploymentArgs returns the webhook container's args from the rendered chart.
func DeploymentArgs(r *Rendered) ([]string, error) {
	dep := &appsv1.Deployment{}
	if err := r.Typed("Deployment", dep); err != nil {
		return nil, err
	}
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == "webhook" {
			return c.Args, nil
		}
	}
	return nil, errors.New("rendered Deployment has no webhook container")
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// LoopbackServing prepares a free 127.0.0.1 port and a directory with a
// serving certificate for 127.0.0.1 signed by a fresh CA.
func LoopbackServing() (port int, certDir string, caBundle []byte, err error) {
	serving := &envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1"}
	if err := serving.PrepWithoutInstalling(); err != nil {
		return 0, "", nil, fmt.Errorf("prepare serving certificates: %w", err)
	}
	return serving.LocalServingPort, serving.LocalServingCertDir, serving.LocalServingCAData, nil
}

// newWebhook prepares loopback serving certificates and ports, and the
// args: the chart's Deployment args with loopback overrides appended (the
// last flag wins, DESIGN.md section 6).
func newWebhook(r *Rendered, extraArgs []string) (*Webhook, []string, error) {
	args, err := DeploymentArgs(r)
	if err != nil {
		return nil, nil, err
	}
	probePort, err := FreePort()
	if err != nil {
		return nil, nil, err
	}
	w := &Webhook{ProbeAddr: "127.0.0.1:" + strconv.Itoa(probePort), done: make(chan error, 1)}
	if slices.Contains(args, "--self-signed") {
		// The webhook makes its own certificate; it only needs a port and
		// an empty directory. 127.0.0.1 is added to the certificate because
		// the local API server calls the webhook by that address.
		if w.Port, err = FreePort(); err != nil {
			return nil, nil, err
		}
		if w.CertDir, err = os.MkdirTemp("", "peergroup-selfsigned-"); err != nil {
			return nil, nil, err
		}
		args = append(args, "--cert-extra-sans=127.0.0.1")
	} else if w.Port, w.CertDir, w.CABundle, err = LoopbackServing(); err != nil {
		return nil, nil, err
	}
	args = append(args,
		"--host=127.0.0.1",
		"--port="+strconv.Itoa(w.Port),
		"--cert-dir="+w.CertDir,
		"--metrics-bind-address=0",
		"--health-probe-bind-address="+w.ProbeAddr,
	)
	return w, append(args, extraArgs...), nil
}

// StartWebhook runs the webhook in this process with the chart's args for
// release namespace ns and waits until /readyz passes.
func StartWebhook(ctx context.Context, c *Cluster, r *Rendered, ns string, extraArgs ...string) (*Webhook, error) {
	return StartWebhookAs(ctx, c.Config, r, ns, extraArgs...)
}

// ServiceAccountConfig impersonates a ServiceAccount, so a component runs
// with exactly the RBAC granted to it.
func ServiceAccountConfig(admin *rest.Config, namespace, name string) *rest.Config {
	cfg := rest.CopyConfig(admin)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + namespace + ":" + name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	return cfg
}

// StartWebhookAs is StartWebhook with the given client config (e.g. the
// chart's ServiceAccount, impersonated).
func StartWebhookAs(ctx context.Context, cfg *rest.Config, r *Rendered, ns string, extraArgs ...string) (*Webhook, error) {
	w, args, err := newWebhook(r, extraArgs)
	if err != nil {
		return nil, err
	}
	getenv := func(k string) string {
		if k == "POD_NAMESPACE" {
			return ns
		}
		return ""
	}
	opts, err := server.ParseFlags(args, getenv, "e2e", &bytes.Buffer{})
	if err != nil {
		return nil, fmt.Errorf("parse chart args %q: %w", args, err)
	}
	opts.RestConfig = cfg
	w.Options = opts
	return w, w.Restart(ctx)
}

// Restart runs a stopped in-process webhook again, on the same port with
// the same certificates, and waits until it is ready.
func (w *Webhook) Restart(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	w.done = make(chan error, 1)
	go func() { w.done <- server.Run(runCtx, w.Options) }()
	if err := w.waitReady(ctx); err != nil {
		w.Stop()
		return err
	}
	return nil
}

// StartWebhookProcess runs the compiled webhook binary, as the Deployment
// would, against the cluster in kubeconfig; its output goes to logs.
func StartWebhookProcess(ctx context.Context, binary, kubeconfig string, r *Rendered, ns string, logs io.Writer, extraArgs ...string) (*Webhook, error) {
	w, args, err := newWebhook(r, extraArgs)
	if err != nil {
		return nil, err
	}
	w.Args = args
	if err := w.StartProcess(ctx, binary, kubeconfig, ns, logs); err != nil {
		return nil, err
	}
	return w, nil
}

// StartProcess starts the webhook binary with w.Args (again, after a Kill:
// same port, same certificates) and waits until it is ready.
func (w *Webhook) StartProcess(ctx context.Context, binary, kubeconfig, ns string, logs io.Writer) error {
	runCtx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	w.done = make(chan error, 1)
	cmd := exec.CommandContext(runCtx, binary, w.Args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "POD_NAMESPACE="+ns)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	if err := cmd.Start(); err != nil {
		cancel()
		return fmt.Errorf("start %s: %w", binary, err)
	}
	w.Cmd = cmd
	done := w.done
	go func() { done <- cmd.Wait() }()
	if err := w.waitReady(ctx); err != nil {
		w.Stop()
		return err
	}
	return nil
}

// Kill ends a webhook process with SIGKILL, as the OOM killer or a node
// failure would: no graceful shutdown.
func (w *Webhook) Kill() error {
	if w.Cmd == nil || w.Cmd.Process == nil {
		return errors.New("not a webhook process")
	}
	if err := w.Cmd.Process.Kill(); err != nil {
		return err
	}
	<-w.done
	w.cancel()
	return nil
}

func (w *Webhook) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-w.done:
			return fmt.Errorf("webhook exited before ready: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get("http://" + w.ProbeAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	detail := ""
	if resp, err := http.Get("http://" + w.ProbeAddr + "/readyz?verbose=1"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		detail = string(body)
	}
	return fmt.Errorf("webhook not ready after 30s: %s", detail)
}

// Stop stops the webhook and waits for it to exit.
func (w *Webhook) Stop() {
	w.cancel()
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
	}
}

// TLSClient trusts the webhook's CA, for posting AdmissionReviews directly.
func (w *Webhook) TLSClient() *http.Client { return TLSClient(w.CABundle, "") }

// TLSClient trusts caBundle and, when serverName is set, verifies that name
// instead of the dialled address. Connections are not reused, so every
// request sees the certificate served at that moment.
func TLSClient(caBundle []byte, serverName string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: x509Pool(caBundle), ServerName: serverName, MinVersion: tls.VersionTLS12},
	}}
}

// Addr is the webhook's loopback host:port.
func (w *Webhook) Addr() string { return "127.0.0.1:" + strconv.Itoa(w.Port) }

// RegisterWebhook creates the chart's MutatingWebhookConfiguration with
// every selector and policy as rendered, but with each clientConfig pointing
// at url and trusting caBundle. nameSuffix registers a second copy.
func RegisterWebhook(ctx context.Context, c *Cluster, r *Rendered, url string, caBundle []byte, nameSuffix string) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	return RegisterWebhookWith(ctx, c, r, url, caBundle, nameSuffix, nil)
}

// RegisterWebhookWith is RegisterWebhook with tweak applied to each entry
// after its clientConfig is set (e.g. a narrower namespaceSelector).
func RegisterWebhookWith(ctx context.Context, c *Cluster, r *Rendered, url string, caBundle []byte, nameSuffix string, tweak func(*admissionregistrationv1.MutatingWebhook)) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	mwc, err := RenderedWebhookConfig(r)
	if err != nil {
		return nil, err
	}
	mwc.Name += nameSuffix
	for i := range mwc.Webhooks {
		u := url
		mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: caBundle}
		if tweak != nil {
			tweak(&mwc.Webhooks[i])
		}
	}
	if err := c.Client.Create(ctx, mwc); err != nil {
		return nil, fmt.Errorf("create MutatingWebhookConfiguration %s: %w", mwc.Name, err)
	}
	return mwc, nil
}

// RenderedWebhookConfig is the chart's MutatingWebhookConfiguration, typed.
func RenderedWebhookConfig(r *Rendered) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	return mwc, r.Typed("MutatingWebhookConfiguration", mwc)
}

// WaitForInjection polls with server-side dry-run pod creates in namespace
// ns until the API server has picked up the webhook configuration (it
// watches configurations, so a fresh one takes a moment to be called).
func WaitForInjection(ctx context.Context, c *Cluster, ns string) error {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		pod := &corev1.Pod{}
		pod.Namespace = ns
		pod.GenerateName = "probe-"
		pod.Labels = map[string]string{"peergroup.dev/group": "readiness-probe"}
		pod.Spec.Containers = []corev1.Container{{Name: "c", Image: "busybox"}}
		err := c.Client.Create(ctx, pod, client.DryRunAll)
		if err == nil {
			for _, ic := range pod.Spec.InitContainers {
				if ic.Name == "seed-discovery" {
					return nil
				}
			}
			last = errors.New("dry-run pod was not injected yet")
		} else {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("webhook never took effect: %w", last)
}

func x509Pool(pemData []byte) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemData)
	return pool
}

// ApplyIdentity creates the chart's ServiceAccount and RBAC objects, so the
// webhook can run with exactly those permissions (ServiceAccountConfig).
func ApplyIdentity(ctx context.Context, c *Cluster, r *Rendered) error {
	for _, obj := range r.Objects {
		switch obj.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			if err := c.Client.Create(ctx, obj.DeepCopy()); err != nil {
				return fmt.Errorf("create %s %s: %w", obj.GetKind(), obj.GetName(), err)
			}
		}
	}
	return nil
}
