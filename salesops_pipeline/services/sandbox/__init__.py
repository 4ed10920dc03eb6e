"""A stand-in for the voice provider and the CRM, for laptops and CI.

It speaks exactly the provider's HTTP API, keeps its state in SQLite so that what the pipeline
writes is there on the next read, and is seeded with demo campaigns. The pipeline reaches it
over loopback with the same client as production: only the base URL differs.
"""
