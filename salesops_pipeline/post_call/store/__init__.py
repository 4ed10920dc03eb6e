"""The post-call inbox's storage, one module per concern; `post_call.inbox.Inbox` puts them
together behind one API."""
