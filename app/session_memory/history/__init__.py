"""History operations beyond the item list: atomic replace, fork, metadata, live follow.

``service.HistoryService`` does the work for the routes in ``api.routes.history`` with
the items service's rules (tenants, limits, If-Match, Idempotency-Key); ``follow``
streams a session's changes as server-sent events; ``payload`` reads the bodies.
"""
