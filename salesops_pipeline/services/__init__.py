"""Services that run beside Dagster: the webhook intake and the sandbox provider."""
