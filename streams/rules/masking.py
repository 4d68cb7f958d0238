"""How an account is named to its own customer: the last four characters, masked."""

from __future__ import annotations


def mask_account(account_id: str) -> str:
    """The last four characters, as a customer sees them: `•••• 0189`."""
    return "•••• " + account_id[-4:]
