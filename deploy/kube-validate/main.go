// Command kube-validate checks rendered Kubernetes manifests (`helm template` output) offline
// against the Kubernetes API types, without a cluster and without downloading JSON schemas.
//
//	kube-validate [FILE ...]   (stdin when no file is given)
//
// Every YAML document is decoded strictly into the Go type of its apiVersion and kind, as
// the API server's strict field validation does: the types of k8s.io/api (the source the
// API's OpenAPI schemas are generated from) and, for ServiceMonitor, the Prometheus
// Operator's monitoring/v1 types. A field the type does not have (a typo, a wrong level of
// indentation), a value of the wrong type, a duplicate key or an unknown kind fails. Then a
// few rules of the API server's own validation that a chart can get wrong: object names and
// label values, a Deployment's and a PodDisruptionBudget's selector matching the pods'
// labels, container names and images present, probe ports naming a declared port.
// It prints one line per object and exits 1 if any fails.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

func main() {
	s := runtime.NewScheme()
	must(scheme.AddToScheme(s))
	must(monitoringv1.AddToScheme(s))
	decoder := serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()

	inputs := os.Args[1:]
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	objects, failures := 0, 0
	for _, in := range inputs {
		var r io.Reader = os.Stdin
		if in != "-" {
			f, err := os.Open(in)
			must(err)
			defer f.Close()
			r = f
		}
		docs := utilyaml.NewYAMLReader(bufio.NewReader(r))
		for {
			doc, err := docs.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			must(err)
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			objects++
			name, err := check(decoder, doc)
			if err != nil {
				failures++
				fmt.Printf("FAIL %s (%s): %v\n", name, in, err)
			} else {
				fmt.Printf("ok   %s\n", name)
			}
		}
	}
	fmt.Printf("%d objects, %d invalid\n", objects, failures)
	if objects == 0 || failures > 0 {
		os.Exit(1)
	}
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube-validate:", err)
		os.Exit(2)
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

func check(decoder runtime.Decoder, doc []byte) (string, error) {
	// Duplicate keys fail here (YAML → JSON, strict).
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return "?", err
	}
	obj, gvk, err := decoder.Decode(js, nil, nil)
	name := "?"
	if gvk != nil {
		name = gvk.Kind
	}
	if err != nil {
		return name, err
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return name, fmt.Errorf("not an object with metadata")
	}
	name = fmt.Sprintf("%s/%s", gvk.Kind, m.GetName())
	var problems []string
	for _, e := range validation.IsDNS1123Subdomain(m.GetName()) {
		problems = append(problems, "metadata.name: "+e)
	}
	problems = append(problems, checkLabels("metadata.labels", m.GetLabels())...)
	switch o := obj.(type) {
	case *appsv1.Deployment:
		problems = append(problems, checkDeployment(o)...)
	case *policyv1.PodDisruptionBudget:
		if o.Spec.Selector == nil {
			problems = append(problems, "spec.selector: required")
		}
		if (o.Spec.MinAvailable == nil) == (o.Spec.MaxUnavailable == nil) {
			problems = append(problems, "spec: exactly one of minAvailable and maxUnavailable")
		}
	case *corev1.Service:
		for i, p := range o.Spec.Ports {
			if p.Port <= 0 || p.Port > 65535 {
				problems = append(problems, fmt.Sprintf("spec.ports[%d].port: %d out of range", i, p.Port))
			}
		}
	case *corev1.ConfigMap:
		for k := range o.Data {
			for _, e := range validation.IsConfigMapKey(k) {
				problems = append(problems, "data["+k+"]: "+e)
			}
		}
	}
	if len(problems) > 0 {
		return name, errors.New(strings.Join(problems, "; "))
	}
	return name, nil
}

func checkLabels(path string, l map[string]string) []string {
	var out []string
	for k, v := range l {
		for _, e := range validation.IsQualifiedName(k) {
			out = append(out, fmt.Sprintf("%s key %q: %s", path, k, e))
		}
		for _, e := range validation.IsValidLabelValue(v) {
			out = append(out, fmt.Sprintf("%s[%s]: %s", path, k, e))
		}
	}
	return out
}

func checkDeployment(d *appsv1.Deployment) []string {
	var out []string
	if d.Spec.Selector == nil {
		return append(out, "spec.selector: required")
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		out = append(out, "spec.selector: "+err.Error())
	} else if sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		out = append(out, "spec.selector does not match spec.template.metadata.labels")
	}
	out = append(out, checkLabels("spec.template.metadata.labels", d.Spec.Template.Labels)...)
	pod := d.Spec.Template.Spec
	if len(pod.Containers) == 0 {
		out = append(out, "spec.template.spec.containers: required")
	}
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
	}
	all := append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...)
	for _, c := range all {
		p := "container " + c.Name
		for _, e := range validation.IsDNS1123Label(c.Name) {
			out = append(out, p+": name: "+e)
		}
		if c.Image == "" {
			out = append(out, p+": image: required")
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				out = append(out, fmt.Sprintf("%s: volumeMount %q names no volume", p, m.Name))
			}
		}
		ports := map[string]bool{}
		numbers := map[int32]bool{}
		for _, cp := range c.Ports {
			ports[cp.Name] = true
			numbers[cp.ContainerPort] = true
		}
		for what, pr := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
			if pr == nil || pr.HTTPGet == nil {
				continue
			}
			port := pr.HTTPGet.Port
			if port.Type == intstr.String && !ports[port.StrVal] {
				out = append(out, fmt.Sprintf("%s: %s port %q is not a declared port", p, what, port.StrVal))
			}
			if port.Type == intstr.Int && (port.IntVal <= 0 || port.IntVal > 65535) {
				out = append(out, fmt.Sprintf("%s: %s port %d out of range", p, what, port.IntVal))
			}
		}
	}
	return out
}
