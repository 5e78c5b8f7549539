"""The embedded Substra node: asset and file stores, tuple execution, HTTP protocol."""
