"""The embedded node over real HTTP: a `substra-worker node` process, raw and via the Client."""
