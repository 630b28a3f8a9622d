"""The items pipeline: request headers and bodies in, store calls, JSON bodies out.

``service.ItemsService`` owns every item operation (read, append, pop, clear) and its
conditional and idempotent rules; ``headers`` parses the headers that condition a
write, ``payload`` reads and splits request bodies, ``wire`` writes response bodies.

May import: ``storage``, ``problems``, ``observability``, ``config`` and Starlette's
ASGI types; never ``api`` or ``middleware``, which call it.
"""
