"""Text from a bank, made safe to show in a chat.

A merchant name comes from a bank's feed and ends up in a customer's chat. It
must not be able to reorder what the customer reads (bidi overrides and
isolates), hide characters (zero-width, format characters), break the message
into lines, or carry control, private-use or unassigned code points, and it
must stay short. `shown` keeps letters, digits, marks, punctuation, symbols
(emoji included) and single spaces, in NFC form, and cuts at `limit`
characters with an ellipsis.
"""

from __future__ import annotations

import unicodedata

MERCHANT_LIMIT = 64
"""What a chat line shows of a merchant's name (ingest accepts up to 256)."""
# Unicode general categories never shown: control, format (bidi, zero-width),
# surrogates, private use, unassigned, and line or paragraph separators.
_DROPPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def shown(text: str, limit: int = MERCHANT_LIMIT) -> str:
    """`text` as a chat may show it: only visible characters and single spaces."""
    if text.isascii() and text.isprintable() and "  " not in text and text == text.strip():
        return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"  # most names
    kept = []
    for char in unicodedata.normalize("NFC", text):
        category = unicodedata.category(char)
        if category in _DROPPED:
            if category in ("Cc", "Zl", "Zp"):  # a line break or tab still separates words
                kept.append(" ")
            continue
        kept.append(" " if category == "Zs" else char)
    words = "".join(kept).split()
    cleaned = " ".join(words)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1].rstrip() + "…"


def shown_or_none(text: str | None, limit: int = MERCHANT_LIMIT) -> str | None:
    """`shown`, for an optional field; a text with nothing visible left is None."""
    if text is None:
        return None
    return shown(text, limit) or None
