"""The substra-worker test suite."""
