package admit

// The patch: DirectPatch writes the RFC 6902 operations Mutate implies,
// instead of encoding the mutated pod and diffing it with the request's
// (admission.PatchResponseFromRaw, gomodules.xyz/jsonpatch/v2), which
// measured 13-19 % slower at the p50 of a pod CREATE through kube-apiserver
// (test/bench/RESULTS.md, section 10; docs/design.md, "The patch").
// jsonpatch stays the oracle: the equivalence tests and
// FuzzPatchEquivalence apply both patches to the same pod and demand the
// same result, so a new kind of change made by Mutate fails them until
// DirectPatch writes it. InitContainerCache reuses the encoded init
// container of a group.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/peergroup/peergroup/contract"
)

// DirectPatch returns RFC 6902 operations for the fields Mutate changes:
// labels, annotations, each container's env and volumeMounts, volumes and
// init containers. Mutate only adds map keys and appends list items (the
// one exception: seed-discovery placed first, init-first), so each change
// is an "add" of a key, of an item at the end ("-") or at 0, or of a whole
// field that was empty.
func DirectPatch(in, out *corev1.Pod) ([]byte, error) {
	return directPatch(in, out, nil)
}

func directPatch(in, out *corev1.Pod, cache *InitContainerCache) ([]byte, error) {
	p := &patchWriter{cache: cache}
	// Sized for a typical injection (a cached init container and a
	// handful of small operations), so the buffer does not grow.
	p.buf.Grow(patchSizeHint + cache.largest())
	p.enc = json.NewEncoder(&p.buf)
	p.mapOps("/metadata/labels", in.Labels, out.Labels)
	p.mapOps("/metadata/annotations", in.Annotations, out.Annotations)
	if len(in.Spec.Containers) != len(out.Spec.Containers) {
		return nil, fmt.Errorf("container count changed")
	}
	for i := range out.Spec.Containers {
		base := "/spec/containers/" + strconv.Itoa(i)
		if err := appendOps(p, base+"/env", in.Spec.Containers[i].Env, out.Spec.Containers[i].Env); err != nil {
			return nil, err
		}
		if err := appendOps(p, base+"/volumeMounts", in.Spec.Containers[i].VolumeMounts, out.Spec.Containers[i].VolumeMounts); err != nil {
			return nil, err
		}
	}
	if err := appendOps(p, "/spec/volumes", in.Spec.Volumes, out.Spec.Volumes); err != nil {
		return nil, err
	}
	if err := appendOps(p, "/spec/imagePullSecrets", in.Spec.ImagePullSecrets, out.Spec.ImagePullSecrets); err != nil {
		return nil, err
	}
	if err := initContainerOps(p, in.Spec.InitContainers, out.Spec.InitContainers); err != nil {
		return nil, err
	}
	return p.bytes(), p.err
}

// initContainerOps writes the init container Mutate added: at the end, or
// first (init-first), where the others keep their order behind it.
func initContainerOps(p *patchWriter, in, out []corev1.Container) error {
	const path = "/spec/initContainers"
	if len(in) > 0 && len(out) == len(in)+1 && out[0].Name == contract.InitContainerName && in[0].Name != contract.InitContainerName {
		p.op("add", path+"/0", out[0])
		return nil
	}
	return appendOps(p, path, in, out)
}

// patchSizeHint is the patch of one container's env and mount, the volume
// and the labels and annotations, without the init container.
const patchSizeHint = 1024

// patchWriter writes operations straight into one buffer.
type patchWriter struct {
	buf   bytes.Buffer
	enc   *json.Encoder
	n     int
	err   error
	cache *InitContainerCache
}

func (p *patchWriter) op(op, path string, value any) {
	if p.err != nil {
		return
	}
	if p.n == 0 {
		p.buf.WriteByte('[')
	} else {
		p.buf.WriteByte(',')
	}
	p.n++
	p.buf.WriteString(`{"op":"` + op + `","path":`)
	if p.err = p.enc.Encode(path); p.err != nil {
		return
	}
	p.buf.WriteString(`,"value":`)
	if p.err = p.cache.write(&p.buf, value); p.err == errNotCached {
		p.err = p.enc.Encode(value)
	}
	p.buf.WriteByte('}')
}

func (p *patchWriter) bytes() []byte {
	if p.n == 0 {
		return nil
	}
	p.buf.WriteByte(']')
	return p.buf.Bytes()
}

func (p *patchWriter) mapOps(path string, in, out map[string]string) {
	if len(in) == 0 {
		if len(out) > 0 {
			p.op("add", path, out)
		}
		return
	}
	keys := make([]string, 0, len(out))
	for k := range out {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		old, had := in[k]
		switch {
		case !had:
			p.op("add", path+"/"+escapePointer(k), out[k])
		case old != out[k]:
			p.op("replace", path+"/"+escapePointer(k), out[k])
		}
	}
}

// appendOps emits the items out has beyond in; the shared prefix must be
// unchanged (Mutate never edits an existing item).
func appendOps[T any](p *patchWriter, path string, in, out []T) error {
	if len(out) < len(in) {
		return fmt.Errorf("%s shrank", path)
	}
	if len(out) == len(in) {
		return nil
	}
	if len(in) == 0 {
		p.op("add", path, out)
		return nil
	}
	for _, item := range out[len(in):] {
		p.op("add", path+"/-", item)
	}
	return nil
}

// escapePointer escapes a JSON pointer token (RFC 6901).
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// InitContainerCache keeps the JSON of injected init containers: within one
// webhook process the container depends only on the fields keyed below (the
// rest comes from the fixed Config), so pods of one group share one
// encoding instead of a reflective encode per admission. The zero value is
// ready; nil disables it.
type InitContainerCache struct {
	entries sync.Map
	size    atomic.Int64
	maxLen  atomic.Int64
}

// maxInitContainerEntries and maxCachedEncoding bound the cache's memory
// (and the patch buffers sized from its largest entry): one entry per group
// and tuning combination in use, each of the size a real init container
// encodes to.
const (
	maxInitContainerEntries = 4096
	maxCachedEncoding       = 8 << 10
)

var errNotCached = errors.New("not an injected init container")

// write writes the JSON of v when v is the injected init container (alone
// or as a one-item list), and errNotCached otherwise.
func (c *InitContainerCache) write(buf *bytes.Buffer, v any) error {
	var ic *corev1.Container
	wrap := false
	switch t := v.(type) {
	case corev1.Container:
		ic = &t
	case []corev1.Container:
		if len(t) == 1 {
			ic, wrap = &t[0], true
		}
	}
	if c == nil || ic == nil || ic.Name != contract.InitContainerName {
		return errNotCached
	}
	key := initContainerKey(ic)
	b, ok := c.entries.Load(key)
	if !ok {
		enc, err := json.Marshal(ic)
		if err != nil {
			return err
		}
		if c.size.Load() < maxInitContainerEntries && len(enc) <= maxCachedEncoding {
			c.entries.Store(key, enc)
			c.size.Add(1)
			for l := c.maxLen.Load(); int64(len(enc)) > l && !c.maxLen.CompareAndSwap(l, int64(len(enc))); l = c.maxLen.Load() {
			}
		}
		b = enc
	}
	if wrap {
		buf.WriteByte('[')
	}
	buf.Write(b.([]byte))
	if wrap {
		buf.WriteByte(']')
	}
	return nil
}

// Len is the number of cached encodings.
func (c *InitContainerCache) Len() int {
	if c == nil {
		return 0
	}
	return int(c.size.Load())
}

// largest is the size of the largest cached encoding, for sizing buffers.
func (c *InitContainerCache) largest() int {
	if c == nil {
		return 0
	}
	return int(c.maxLen.Load())
}

// initContainerKey covers every field that varies between admissions: the
// env (the tuning values, among them refresh and timeout, from which the
// sidecar's restartPolicy and startup probe follow), the user and group
// IDs (pinned for a pod that pins root when fixed IDs are off) and the
// resources.
func initContainerKey(c *corev1.Container) string {
	var k strings.Builder
	k.Grow(256)
	k.WriteString(c.Image)
	if sc := c.SecurityContext; sc != nil {
		for _, id := range []*int64{sc.RunAsUser, sc.RunAsGroup} {
			k.WriteString("\x05")
			if id != nil {
				k.WriteString(strconv.FormatInt(*id, 10))
			}
		}
	}
	for _, s := range c.Command {
		k.WriteString("\x00" + s)
	}
	for _, s := range c.Args {
		k.WriteString("\x01" + s)
	}
	for _, e := range c.Env {
		k.WriteString("\x02" + e.Name + "=" + e.Value)
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			k.WriteString("\x03" + e.ValueFrom.FieldRef.FieldPath)
		}
	}
	// Resources vary with the pod's QoS class (guaranteedResources): every
	// resource the configuration names is part of the key, in name order,
	// each quantity exactly.
	for _, list := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
		k.WriteString("\x04")
		var buf [8]corev1.ResourceName
		names := buf[:0]
		for name := range list {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			q := list[name]
			k.WriteString(string(name))
			k.WriteByte('=')
			// Units and nano-units: exact for every quantity in canonical
			// form (nano is the finest suffix), without the allocation of
			// formatting it.
			var num [20]byte
			k.Write(strconv.AppendInt(num[:0], q.Value(), 10))
			k.WriteByte('/')
			k.Write(strconv.AppendInt(num[:0], q.ScaledValue(resource.Nano), 10))
			k.WriteByte(',')
		}
	}
	return k.String()
}
