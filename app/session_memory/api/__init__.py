"""HTTP routes under /v1 and the health probes."""
