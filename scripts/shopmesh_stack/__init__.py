"""The local stack tool: installs, starts, watches and stops the real components.

`python -m shopmesh_stack up|down|status|logs|clean|install` (driven by make).
Tests use the same `Stack` class with a temporary data directory and free ports.
"""
