"""Call campaigns at the voice provider: their contacts and the numbers two campaigns share (Q1)."""
