"""Local tooling: the supervised stack, the event simulator and an embedded HTTP server."""
