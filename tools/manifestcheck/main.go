// Command manifestcheck validates rendered Kubernetes, Istio and Strimzi manifests
// offline, with the projects' own rules:
//
//   - Istio and Strimzi objects against their CustomResourceDefinitions' OpenAPI
//     schemas (Istio's from the istio.io/api module, Strimzi's vendored in crds/),
//     with the API server's own schema validator (k8s.io/kube-openapi) and its
//     strict field validation (a field the schema does not declare is an error,
//     as `kubectl apply` with --validate=strict reports it);
//   - Istio objects also by strict decoding into the istio.io/client-go types,
//     the spec with protojson (unknown fields and wrong types fail);
//   - Kubernetes objects by strict decoding into the k8s.io/api types (unknown
//     fields, duplicate keys and wrong types fail).
//
// Usage: manifestcheck -crds FILE[,FILE...] MANIFEST.yaml...
// It prints one line per problem and exits 1 if there is any, 2 on bad usage.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"
	"sigs.k8s.io/yaml"
)

// gvk names a kind at one API version, e.g. "networking.istio.io/v1, Kind=Gateway".
type gvk struct{ apiVersion, kind string }

func (g gvk) String() string { return g.apiVersion + " " + g.kind }

// Kubernetes kinds: strict decoding into their k8s.io/api types.
var kubeKinds = map[gvk]func() any{
	{"v1", "Namespace"}:                                  func() any { return &corev1.Namespace{} },
	{"v1", "ServiceAccount"}:                             func() any { return &corev1.ServiceAccount{} },
	{"v1", "ConfigMap"}:                                  func() any { return &corev1.ConfigMap{} },
	{"v1", "Secret"}:                                     func() any { return &corev1.Secret{} },
	{"v1", "Service"}:                                    func() any { return &corev1.Service{} },
	{"apps/v1", "Deployment"}:                            func() any { return &appsv1.Deployment{} },
	{"batch/v1", "Job"}:                                  func() any { return &batchv1.Job{} },
	{"policy/v1", "PodDisruptionBudget"}:                 func() any { return &policyv1.PodDisruptionBudget{} },
	{"autoscaling/v2", "HorizontalPodAutoscaler"}:        func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	{"networking.k8s.io/v1", "NetworkPolicy"}:            func() any { return &networkingv1.NetworkPolicy{} },
	{"kustomize.config.k8s.io/v1beta1", "Kustomization"}: nil, // kustomize's own file: not an API object
}

// istioObject is an Istio client-go type: strict JSON for the envelope, protojson for the spec.
type istioObject struct {
	envelope func() any
	spec     func(obj any) proto.Message
}

var istioKinds = map[gvk]istioObject{
	{"security.istio.io/v1", "AuthorizationPolicy"}: {
		func() any { return &istiosecurity.AuthorizationPolicy{} },
		func(o any) proto.Message { return &o.(*istiosecurity.AuthorizationPolicy).Spec },
	},
	{"security.istio.io/v1", "PeerAuthentication"}: {
		func() any { return &istiosecurity.PeerAuthentication{} },
		func(o any) proto.Message { return &o.(*istiosecurity.PeerAuthentication).Spec },
	},
	{"security.istio.io/v1", "RequestAuthentication"}: {
		func() any { return &istiosecurity.RequestAuthentication{} },
		func(o any) proto.Message { return &o.(*istiosecurity.RequestAuthentication).Spec },
	},
	{"networking.istio.io/v1", "Gateway"}: {
		func() any { return &istionetworking.Gateway{} },
		func(o any) proto.Message { return &o.(*istionetworking.Gateway).Spec },
	},
	{"networking.istio.io/v1", "VirtualService"}: {
		func() any { return &istionetworking.VirtualService{} },
		func(o any) proto.Message { return &o.(*istionetworking.VirtualService).Spec },
	},
	{"networking.istio.io/v1", "DestinationRule"}: {
		func() any { return &istionetworking.DestinationRule{} },
		func(o any) proto.Message { return &o.(*istionetworking.DestinationRule).Spec },
	},
}

// crdDocument is the part of a CustomResourceDefinition this program reads.
type crdDocument struct {
	Kind string `json:"kind"`
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind string `json:"kind"`
		} `json:"names"`
		Versions []struct {
			Name   string `json:"name"`
			Served bool   `json:"served"`
			Schema struct {
				OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

// strictFields makes every object schema that lists its properties refuse other
// fields, unless it preserves unknown fields or declares additionalProperties:
// the API server prunes such fields, and with strict field validation refuses them.
func strictFields(schema map[string]any) {
	_, preserves := schema["x-kubernetes-preserve-unknown-fields"]
	_, additional := schema["additionalProperties"]
	if props, ok := schema["properties"].(map[string]any); ok {
		if !preserves && !additional {
			schema["additionalProperties"] = false
		}
		for _, sub := range props {
			if m, ok := sub.(map[string]any); ok {
				strictFields(m)
			}
		}
	}
	for _, key := range []string{"items", "additionalProperties", "not"} {
		if m, ok := schema[key].(map[string]any); ok {
			strictFields(m)
		}
	}
	for _, key := range []string{"allOf", "anyOf", "oneOf"} {
		if list, ok := schema[key].([]any); ok {
			for _, sub := range list {
				if m, ok := sub.(map[string]any); ok {
					strictFields(m)
				}
			}
		}
	}
}

// documents splits a multi-document YAML stream into JSON documents (duplicate keys fail).
func documents(data []byte) ([][]byte, error) {
	var out [][]byte
	for i, part := range splitYAML(data) {
		if strings.TrimSpace(stripComments(part)) == "" {
			continue
		}
		js, err := yaml.YAMLToJSONStrict([]byte(part))
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		out = append(out, js)
	}
	return out, nil
}

func splitYAML(data []byte) []string {
	var parts []string
	var current strings.Builder
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if strings.TrimRight(line, "\r\n") == "---" {
			parts = append(parts, current.String())
			current.Reset()
			continue
		}
		current.WriteString(line)
	}
	return append(parts, current.String())
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func loadSchemas(files []string) (map[gvk]*validate.SchemaValidator, error) {
	validators := map[gvk]*validate.SchemaValidator{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		docs, err := documents(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		for _, doc := range docs {
			var crd crdDocument
			if err := json.Unmarshal(doc, &crd); err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				continue
			}
			for _, version := range crd.Spec.Versions {
				if !version.Served || version.Schema.OpenAPIV3Schema == nil {
					continue
				}
				raw := version.Schema.OpenAPIV3Schema
				// The API server accepts these on every object whatever the schema lists;
				// metadata is checked against ObjectMeta (checkMetadata), not the schema.
				if props, ok := raw["properties"].(map[string]any); ok {
					for _, field := range []string{"apiVersion", "kind"} {
						if _, declared := props[field]; !declared {
							props[field] = map[string]any{"type": "string"}
						}
					}
					props["metadata"] = map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
				}
				strictFields(raw)
				encoded, err := json.Marshal(raw)
				if err != nil {
					return nil, err
				}
				var schema spec.Schema
				if err := json.Unmarshal(encoded, &schema); err != nil {
					return nil, fmt.Errorf("%s: %s/%s: %w", file, crd.Spec.Group, version.Name, err)
				}
				key := gvk{crd.Spec.Group + "/" + version.Name, crd.Spec.Names.Kind}
				validators[key] = validate.NewSchemaValidator(&schema, nil, "", strfmt.Default)
			}
		}
	}
	return validators, nil
}

func strictJSON(data []byte, into any) error {
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(into); err != nil {
		return err
	}
	if _, err := decoder.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the object")
	}
	return nil
}

// checkIstio decodes strictly into the client-go type; the spec, a protobuf
// message that client-go decodes leniently, is decoded again with protojson.
func checkIstio(kind istioObject, doc []byte) error {
	var envelope struct {
		APIVersion string          `json:"apiVersion"`
		Kind       string          `json:"kind"`
		Metadata   json.RawMessage `json:"metadata"`
		Spec       json.RawMessage `json:"spec"`
	}
	if err := strictJSON(doc, &envelope); err != nil {
		return err
	}
	obj := kind.envelope()
	if err := json.Unmarshal(doc, obj); err != nil {
		return err
	}
	if len(envelope.Spec) > 0 {
		if err := (protojson.UnmarshalOptions{}).Unmarshal(envelope.Spec, kind.spec(obj)); err != nil {
			return fmt.Errorf("spec: %w", err)
		}
	}
	return nil
}

// checkMetadata decodes a custom resource's metadata strictly into ObjectMeta.
func checkMetadata(doc []byte) error {
	var envelope struct {
		Metadata json.RawMessage `json:"metadata"`
	}
	if err := json.Unmarshal(doc, &envelope); err != nil {
		return err
	}
	if len(envelope.Metadata) == 0 {
		return errors.New("metadata: missing")
	}
	var meta metav1.ObjectMeta
	if err := strictJSON(envelope.Metadata, &meta); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	return nil
}

func checkSchema(validator *validate.SchemaValidator, doc []byte) []string {
	var value any
	if err := json.Unmarshal(doc, &value); err != nil {
		return []string{err.Error()}
	}
	result := validator.Validate(value)
	var problems []string
	for _, err := range result.Errors {
		problems = append(problems, "schema: "+err.Error())
	}
	return problems
}

func checkDocument(schemas map[gvk]*validate.SchemaValidator, doc []byte) (string, []string) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(doc, &head); err != nil {
		return "?", []string{err.Error()}
	}
	key := gvk{head.APIVersion, head.Kind}
	label := fmt.Sprintf("%s %s", head.Kind, head.Metadata.Name)
	if build, ok := kubeKinds[key]; ok {
		if build == nil {
			return label, nil
		}
		if err := strictJSON(doc, build()); err != nil {
			return label, []string{"k8s.io/api: " + err.Error()}
		}
		return label, nil
	}
	validator, known := schemas[key]
	istio, isIstio := istioKinds[key]
	if !known && !isIstio {
		return label, []string{fmt.Sprintf("no schema or type known for %s (refusing to pass it unchecked)", key)}
	}
	var problems []string
	if err := checkMetadata(doc); err != nil {
		problems = append(problems, err.Error())
	}
	if known {
		problems = append(problems, checkSchema(validator, doc)...)
	} else {
		problems = append(problems, fmt.Sprintf("no CRD schema loaded for %s", key))
	}
	if isIstio {
		if err := checkIstio(istio, doc); err != nil {
			problems = append(problems, "istio.io/client-go: "+err.Error())
		}
	}
	return label, problems
}

func main() {
	crds := flag.String("crds", "", "comma-separated CustomResourceDefinition files")
	flag.Parse()
	if flag.NArg() == 0 || *crds == "" {
		fmt.Fprintln(os.Stderr, "usage: manifestcheck -crds FILE[,FILE...] MANIFEST.yaml...")
		os.Exit(2)
	}
	schemas, err := loadSchemas(strings.Split(*crds, ","))
	if err != nil {
		fmt.Fprintln(os.Stderr, "manifestcheck: loading CRDs:", err)
		os.Exit(2)
	}
	failed, checked := 0, 0
	for _, file := range flag.Args() {
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Printf("%s: %v\n", file, err)
			failed++
			continue
		}
		docs, err := documents(data)
		if err != nil {
			fmt.Printf("%s: %v\n", file, err)
			failed++
			continue
		}
		for _, doc := range docs {
			label, problems := checkDocument(schemas, doc)
			checked++
			sort.Strings(problems)
			for _, problem := range problems {
				fmt.Printf("%s: %s: %s\n", file, label, problem)
			}
			if len(problems) > 0 {
				failed++
			}
		}
	}
	if failed > 0 {
		fmt.Printf("manifestcheck: %d of %d objects invalid\n", failed, checked)
		os.Exit(1)
	}
	fmt.Printf("manifestcheck: %d objects valid\n", checked)
}
