"""Renders the cluster: Istio policies, Kubernetes manifests and Strimzi resources from mesh/mesh.yaml."""
