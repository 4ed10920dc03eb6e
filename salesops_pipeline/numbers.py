"""How figures are written for the people who read the UI: one French style for money, counts
and percentages in every table and chart (the company and its managers are French).

The command line keeps the formats of the original reports (`1813299.0€`, `12.5%`): scripts read
them. Plain functions, nothing of Dagster.
"""

# French typography: a narrow no-break space groups the thousands, a comma marks the decimals,
# and a no-break space keeps the unit (€, %) on the line of its number.
THOUSANDS_SEPARATOR = "\u202f"
UNIT_SPACE = "\u00a0"
MISSING = "–"

_FRENCH = str.maketrans({",": THOUSANDS_SEPARATOR, ".": ","})


def count(value: int) -> str:
    """`20 800`: a number of things (sessions, agents, events)."""
    return f"{value:,d}".translate(_FRENCH)


def money(amount: float | None) -> str:
    """`1 813 299,00 €`: an amount in euros, always to the cent."""
    if amount is None:
        return MISSING
    return f"{amount:,.2f}".translate(_FRENCH) + f"{UNIT_SPACE}€"


def percent(ratio: float | None) -> str:
    """`12,5 %`: a ratio (0.125) as a percentage, to one decimal."""
    if ratio is None:
        return MISSING
    return f"{ratio * 100:,.1f}".translate(_FRENCH) + f"{UNIT_SPACE}%"


def change(ratio: float | None) -> str:
    """`+12,5 %`, `-3,0 %`: a change from one period to the next, signed."""
    if ratio is None:
        return MISSING
    text = percent(abs(ratio))
    return ("+" if ratio >= 0 else "-") + text
