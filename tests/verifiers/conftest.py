"""The batched verifier and drafter sessions (fixtures: tests/conftest.py)."""
