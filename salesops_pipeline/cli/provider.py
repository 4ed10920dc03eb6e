"""The provider a command talks to: the configured one, the local stack's, or its own sandbox."""

import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from salesops_pipeline import settings
from salesops_pipeline.clients import ApiTransport
from salesops_pipeline.devtools.stack import running_stack
from salesops_pipeline.errors import InvalidInputError
from salesops_pipeline.redaction import redact_url


@contextmanager
def provider_transport(timeout: float) -> Iterator[ApiTransport]:
    """The configured provider (REMOTE_API_HOST); else the provider of the local stack running
    under SALESOPS_HOME; else the sandbox, served over loopback for this command alone."""
    with ExitStack() as stack:
        host = settings.remote_api_host()
        if host is None and (local := running_stack(settings.salesops_home())):
            host = local.provider_url
        key = settings.remote_api_key()
        if host and not key:
            raise InvalidInputError(
                f"{settings.REMOTE_API_KEY_ENV} is not set: the provider at {redact_url(host)}"
                " needs it"
            )
        if not host:
            from salesops_pipeline.services.sandbox.app import DEMO_PAGE_SIZE
            from salesops_pipeline.services.sandbox.server import (
                ensure_seeded_store,
                running_sandbox,
            )

            key = secrets.token_urlsafe(24)
            # As the local stack's demo serves it: paged, its malformed record included, so
            # that a command answers the same with the stack running or not.
            sandbox = running_sandbox(
                ensure_seeded_store(),
                api_key=key,
                page_size=DEMO_PAGE_SIZE,
                malformed_records=True,
            )
            host = stack.enter_context(sandbox).url
        transport = ApiTransport(host, key, timeout=(3.05, timeout))
        stack.callback(transport.close)
        yield transport
