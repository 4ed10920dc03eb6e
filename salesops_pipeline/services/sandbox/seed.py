"""Demo data for the sandbox provider: two campaigns that share phone numbers, and a CRM.

Seeded and deterministic. It holds what makes the real campaigns awkward: the same number
written five ways across campaigns A and B, a number repeated inside one campaign, numbers
in unassigned ranges that both campaigns call, unreadable numbers, contacts never called, a
malformed record (served only when the sandbox is asked to), and support agents with uneven
loads, one of them inactive.
"""

import json
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from salesops_pipeline.services.sandbox.store import SandboxStore

DEFAULT_CONTACTS_PER_CAMPAIGN = 500
DEFAULT_SEED = 20250331
CAMPAIGNS = ("A", "B")

# The contact of the provider's two reference post-call events.
REFERENCE_CONTACT_ID = "789864ba-9043-45c9-8969-00557cc0db25"

SALES_AGENTS = (
    "anais.garnier@walter-learning.com",
    "martin.mougenot@walter-learning.com",
    "julie.dupont@walter-learning.com",
)
# username, active, weight of campaign-B contacts already assigned to them
SUPPORT_AGENTS = (
    ("cathy.dufour@walter-learning.com", True, 5),
    ("alexandre.bouleau@walter-learning.com", True, 3),
    ("adrien.argentin@walter-learning.com", True, 4),
    ("mathieu.jau@walter-learning.com", False, 0),
)

WRAPUPS = ("Rappel", "Pas intéressé", "Vente", "Messagerie", "support", None)

# The five ways the provider's campaigns write the same French number.
PHONE_FORMATS: tuple[Callable[[str], str], ...] = (
    lambda n: f"+33{n}",
    lambda n: f"0{n}",
    lambda n: f"0{n[0]} {n[1:3]} {n[3:5]} {n[5:7]} {n[7:9]}",
    lambda n: f"+33 {n[0]} {n[1:3]} {n[3:5]} {n[5:7]} {n[7:9]}",
    lambda n: f"0033{n}",
)

# In both campaigns: four that cannot be numbers, two possible but invalid numbers.
INVALID_PHONES = ("12345", "0012345678", "not a number", "", None, "0690123456")


def _national_mobile(rng: random.Random) -> str:
    # 06/07 ranges that the French numbering plan allocates, so these numbers are valid.
    return rng.choice(("60", "61", "62", "64", "65", "66", "67", "68", "75", "76", "77")) + (
        f"{rng.randrange(10_000_000):07d}"
    )


def _call_time(rng: random.Random) -> str:
    moment = datetime(2025, 3, 1, 8) + timedelta(seconds=rng.randrange(30 * 86400))
    return moment.replace(microsecond=rng.randrange(1_000_000)).isoformat()


def _contact(rng: random.Random, campaign: str, phone: str | None, **fields) -> dict:
    called = rng.random() < 0.7
    record = {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "campaign_id": campaign if rng.random() < 0.3 else None,
        "phone": phone,
        "retryDate": None,
        "lastCallAt": _call_time(rng) if called else None,
        "assignedAgent": None,
        "wrapup": rng.choice(WRAPUPS) if called else None,
        "totalCalls": rng.randint(1, 6) if called else 0,
        "crm_id": f"crm-{rng.randrange(10**8):08d}",
    }
    record.update(fields)
    return record


def _showcase(rng: random.Random) -> tuple[dict[str, list[dict]], set[str]]:
    """Hand-written contacts that every sandbox holds, whatever its size, and the ids of those
    that break the provider's schema on purpose."""
    a: list[dict] = []
    b: list[dict] = []
    # One number written five ways: three in A (one of them a repeat), two in B.
    shared = "612345678"
    a.append(_contact(rng, "A", PHONE_FORMATS[0](shared), lastCallAt="2025-03-23T06:30:05.120000"))
    a.append(_contact(rng, "A", PHONE_FORMATS[2](shared), lastCallAt="2025-03-02T09:00:00"))
    a.append(_contact(rng, "A", PHONE_FORMATS[4](shared), lastCallAt=None, totalCalls=0))
    b.append(_contact(rng, "B", PHONE_FORMATS[1](shared), lastCallAt="2025-03-28T04:47:45.900000"))
    b.append(_contact(rng, "B", PHONE_FORMATS[3](shared), lastCallAt=None, totalCalls=0))
    # In both campaigns, never called in B.
    a.append(_contact(rng, "A", "+33650333176", lastCallAt="2025-03-10T23:14:12"))
    b.append(_contact(rng, "B", "06 50 33 31 76", lastCallAt=None, totalCalls=0))
    # A number in the 070 range, which phonenumbers' metadata calls unassigned: invalid
    # today, dialled all the same, and in both campaigns.
    a.append(_contact(rng, "A", "07 02 26 49 26", lastCallAt="2025-03-14T11:02:00"))
    b.append(_contact(rng, "B", "+33702264926", lastCallAt="2025-03-20T16:45:30"))
    # Repeated inside campaign A only: not a cross-campaign duplicate.
    a.append(_contact(rng, "A", "0699887766"))
    a.append(_contact(rng, "A", "+33699887766"))
    for invalid in INVALID_PHONES:
        a.append(_contact(rng, "A", invalid))
        b.append(_contact(rng, "B", invalid))
    # The reference post-call events' contact.
    a.append(
        _contact(
            rng,
            "A",
            "+33680181966",
            id=REFERENCE_CONTACT_ID,
            lastCallAt="2025-04-07T10:26:14",
            totalCalls=2,
            wrapup="Rappel",
            assignedAgent=SALES_AGENTS[0],
        )
    )
    # A record the provider serves but that does not fit its own schema.
    malformed = _contact(rng, "B", "0611223344")
    malformed["totalCalls"] = "many"
    b.append(malformed)
    return {"A": a, "B": b}, {malformed["id"]}


def flawed_contact_ids(seed: int = DEFAULT_SEED) -> set[str]:
    """The ids of the demo's deliberately malformed records, whatever the campaigns' size."""
    return _showcase(random.Random(seed))[1]


def demo_contacts(contacts_per_campaign: int, seed: int) -> Iterator[tuple[str, str, str, bool]]:
    """(id, campaign, JSON body, flawed) rows: the showcase, then random contacts up to the
    size."""
    rng = random.Random(seed)
    showcase, flawed = _showcase(rng)
    support_names = [name for name, _, _ in SUPPORT_AGENTS]
    support_weights = [weight for _, _, weight in SUPPORT_AGENTS]
    shared_pool: list[str] = []
    for campaign in CAMPAIGNS:
        fixed = showcase[campaign]
        for record in fixed:
            yield record["id"], campaign, json.dumps(record), record["id"] in flawed
        for _ in range(max(0, contacts_per_campaign - len(fixed))):
            # About one contact of B in ten has a number already called in A.
            if campaign == "B" and shared_pool and rng.random() < 0.1:
                national = rng.choice(shared_pool)
            else:
                national = _national_mobile(rng)
                if campaign == "A" and rng.random() < 0.2:
                    shared_pool.append(national)
            phone = rng.choice(PHONE_FORMATS)(national)
            record = _contact(rng, campaign, phone)
            if campaign == "B" and rng.random() < 0.5:
                record["assignedAgent"] = rng.choices(support_names, weights=support_weights)[0]
            yield record["id"], campaign, json.dumps(record), False


def demo_agents() -> list[dict]:
    agents = [
        {"id": f"agt-{n:03d}", "username": name, "team": "sales", "active": True}
        for n, name in enumerate(SALES_AGENTS, start=1)
    ]
    agents += [
        {"id": f"agt-{n:03d}", "username": name, "team": "support", "active": active}
        for n, (name, active, _) in enumerate(SUPPORT_AGENTS, start=len(SALES_AGENTS) + 1)
    ]
    return agents


def demo_crm_contacts(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed + 1)
    return [
        {
            "id": f"crm-{n:08d}",
            "first_name": rng.choice(("Camille", "Louis", "Emma", "Hugo", "Chloé", "Jules")),
            "last_name": rng.choice(("Martin", "Bernard", "Thomas", "Petit", "Robert")),
            "phone": f"+33{_national_mobile(rng)}",
            "email": f"contact{n}@mail.example",
        }
        for n in range(count)
    ]


def seed_sandbox(
    store: SandboxStore,
    *,
    contacts_per_campaign: int = DEFAULT_CONTACTS_PER_CAMPAIGN,
    seed: int = DEFAULT_SEED,
) -> None:
    """Fill an empty sandbox with the demo campaigns, agents and CRM contacts."""
    store.create()
    store.add_raw_contacts(demo_contacts(contacts_per_campaign, seed))
    store.add_agents(demo_agents())
    store.add_crm_contacts(demo_crm_contacts(200, seed))
