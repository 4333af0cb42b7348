"""Helpers of the tests: shared synthesis inputs (synthesis_cases) and the fuzz driver (fuzz_ops)."""
