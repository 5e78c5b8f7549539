"""Tests of the step executor running the real test assets through substratools."""
