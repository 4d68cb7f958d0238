"""Spending categories from ISO 18245 merchant category codes (MCC).

Coarse on purpose: a daily digest names a handful of categories a customer
recognises. Ranges follow the MCC groups card networks publish.
"""

from __future__ import annotations

# (first MCC, last MCC, category), checked in order.
_RANGES: tuple[tuple[int, int, str], ...] = (
    (3000, 3999, "travel"),  # airlines, car rental, hotels by brand
    (4011, 4131, "transport"),  # rail, local transport, taxis, buses
    (4511, 4582, "travel"),
    (4784, 4789, "transport"),  # tolls, transport services
    (4812, 4816, "utilities"),  # telecom
    (4899, 4900, "utilities"),  # cable, electricity, gas, water
    (5411, 5499, "groceries"),  # supermarkets, bakeries, convenience
    (5541, 5542, "transport"),  # fuel
    (5811, 5814, "restaurants"),
    (5912, 5912, "health"),  # pharmacies
    (6010, 6011, "cash"),
    (7011, 7012, "travel"),  # lodging
    (7832, 7999, "leisure"),
    (8011, 8099, "health"),
    (5000, 5999, "shopping"),
)


def category(mcc: str | None, channel: str) -> str:
    """The category of a transaction: by MCC for card payments, by channel otherwise."""
    if channel == "ATM":
        return "cash"
    if channel == "FEE":
        return "fees"
    if mcc is not None and mcc.isdigit():
        code = int(mcc)
        for first, last, name in _RANGES:
            if first <= code <= last:
                return name
    if channel in ("TRANSFER", "DIRECT_DEBIT"):
        return "transfers"
    return "other"


# How a customer reads each category, in French and in English.
_LABELS: dict[str, tuple[str, str]] = {
    "travel": ("voyage", "travel"),
    "transport": ("transport", "transport"),
    "utilities": ("factures", "bills"),
    "groceries": ("courses", "groceries"),
    "restaurants": ("restaurants", "restaurants"),
    "health": ("santé", "health"),
    "cash": ("retrait", "cash withdrawal"),
    "leisure": ("loisirs", "leisure"),
    "shopping": ("achats", "shopping"),
    "fees": ("frais", "fees"),
    "transfers": ("virement", "transfer"),
    "other": ("autre", "other"),
}


def label(name: str, french: bool) -> str:
    """A category as a customer reads it (the key itself for one we do not know)."""
    fr, en = _LABELS.get(name, (name, name))
    return fr if french else en
