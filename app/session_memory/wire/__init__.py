"""The wire format: request headers and bodies parsed and bounded, and reply bodies
built from stored item text without re-encoding it. Knows no framework."""
