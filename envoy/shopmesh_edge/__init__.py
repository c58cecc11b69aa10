"""Renders the Envoy edge configuration from the mesh declaration."""
