"""The FastAPI app's routes: the definition of the HTTP API and of ``openapi.json``.

Routes authenticate, validate paths and queries, and call the items service (or the
store, for session records and probes). May import everything but ``middleware``.
"""
