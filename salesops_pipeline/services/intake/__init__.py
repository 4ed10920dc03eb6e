"""The HTTP service the voice provider posts its post-call webhooks to."""
