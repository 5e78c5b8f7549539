"""Helpers shared by the test folders: real processes the tests drive."""
