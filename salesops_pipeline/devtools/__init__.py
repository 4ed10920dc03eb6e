"""Local tooling: the supervised stack and the event simulator."""
