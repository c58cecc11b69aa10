"""A service only a test's mesh declaration names (tests/integration/test_extra_service.py)."""
