"""One contact's history in the inbox: every event that named it, and what this pipeline
handed to support for it. Read by `salesops contact`, never on the post-call path."""

from salesops_pipeline.post_call.events import contact_id_of
from salesops_pipeline.post_call.store.base import _EVENT_SELECT, EventRecord, StoreBase

# What the payload's JSON spells as it is: a contact id with one of these is looked for in
# every payload, since the webhook may have escaped it.
_NEEDS_ESCAPE = set('"\\%_')


def _like_pattern(contact_id: str) -> str | None:
    """A LIKE pattern that every payload naming `contact_id` matches, or None when only a scan
    of every payload is sure to find them (an id JSON may spell with escapes)."""
    if not contact_id.isascii() or not contact_id.isprintable() or _NEEDS_ESCAPE & set(contact_id):
        return None
    return f"%{contact_id}%"


class ContactHistory(StoreBase):
    def events_of_contact(self, contact_id: str) -> list[EventRecord]:
        """Every stored event whose payload names `contact_id` as its contactId, unordered (the
        call order needs the payload's dates: see `post_call.explain`)."""
        pattern = _like_pattern(contact_id)
        where, params = ("WHERE e.payload LIKE ?", (pattern,)) if pattern else ("", ())
        with self.connect() as conn:
            rows = conn.execute(f"{_EVENT_SELECT} {where}", params).fetchall()
        return [
            record
            for record in (EventRecord(*row) for row in rows)
            if contact_id_of(record.payload) == contact_id
        ]

    def transfers_of_contact(self, contact_id: str) -> list[dict]:
        """The contact's transfers to support by this pipeline, oldest first: agent, state and
        when, per event."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT call_id, agent, state, at FROM transfer WHERE contact_id = ?"
                " ORDER BY at, call_id",
                (contact_id,),
            ).fetchall()
        return [
            {"call_id": call_id, "agent": agent, "state": state, "at": at}
            for call_id, agent, state, at in rows
        ]
