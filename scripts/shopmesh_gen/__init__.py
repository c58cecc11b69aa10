"""Code generation from the contracts: the pinned generators and the OpenAPI post-processing.

The entry point is scripts/gen.py (`make gen`, `make gen-check`).
"""
