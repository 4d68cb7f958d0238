"""What a customer asks in the chat: deterministic intents, French and English.

Pure functions, no model, no network (DESIGN.md, "Conversation"). A message is
free text, or the payload of one of our quick replies or postbacks
(`PAYLOADS`, which `streams.rules.replies` offers as quick replies). Text is
read lower-cased and without accents; a whole-message phrase wins, then the
first keyword in priority order (a control before a question: "stop solde"
stops). Nothing recognised is `None`: the conversation answers HELP, once per
window, and never repeats what was written.

What each question needs from the consent (the gate, `streams.rules.outputs`):
BALANCE → BALANCES, RECENT → TRANSACTIONS, MONTH → SUMMARIES. The controls
need no permission: they act on the notifications, not on the bank's data.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from streams.model import Permission

Intent = Literal[
    "BALANCE", "RECENT", "MONTH", "STOP", "PAUSE", "RESUME", "DISCREET_ON", "DISCREET_OFF", "HELP"
]
QUESTIONS: dict[Intent, Permission] = {
    "BALANCE": "BALANCES",
    "RECENT": "TRANSACTIONS",
    "MONTH": "SUMMARIES",
}
"""The questions, and the permission each answer needs."""
CONTROLS: frozenset[Intent] = frozenset({"STOP", "PAUSE", "RESUME", "DISCREET_ON", "DISCREET_OFF"})
"""What acts on the account's notifications; answered by the accounts stage, like questions."""

PAYLOAD_PREFIX = "PASSERELLE_"
PAYLOADS: dict[str, Intent] = {
    f"{PAYLOAD_PREFIX}{intent}": intent for intent in (*QUESTIONS, *sorted(CONTROLS), "HELP")
}
"""Quick-reply and postback payloads: exact, case-sensitive."""

# Whole messages, read without accents and punctuation.
_PHRASES: dict[str, Intent] = {
    "mon solde": "BALANCE",
    "quel est mon solde": "BALANCE",
    "how much do i have": "BALANCE",
    "dernieres operations": "RECENT",
    "mes operations": "RECENT",
    "last transactions": "RECENT",
    "recent transactions": "RECENT",
    "ce mois": "MONTH",
    "ce mois ci": "MONTH",
    "this month": "MONTH",
    "mode discret": "DISCREET_ON",
    "discret on": "DISCREET_ON",
    "discreet on": "DISCREET_ON",
    "discreet mode": "DISCREET_ON",
    "discret off": "DISCREET_OFF",
    "discreet off": "DISCREET_OFF",
    "mode normal": "DISCREET_OFF",
    "pas discret": "DISCREET_OFF",
}
# Keywords, in priority order: the first intent with a keyword in the message wins.
_KEYWORDS: tuple[tuple[Intent, frozenset[str]], ...] = (
    ("STOP", frozenset({"stop", "arret", "arreter", "unsubscribe", "desabonner", "desinscrire"})),
    ("PAUSE", frozenset({"pause"})),
    ("RESUME", frozenset({"reprendre", "reprise", "resume", "unpause", "relancer"})),
    ("DISCREET_ON", frozenset({"discret", "discrete", "discreet"})),
    ("BALANCE", frozenset({"solde", "balance", "soldes"})),
    ("RECENT", frozenset({"operations", "operation", "historique", "transactions", "recent"})),
    ("MONTH", frozenset({"mois", "month", "bilan", "monthly", "depenses", "spending"})),
    ("HELP", frozenset({"aide", "help", "menu", "bonjour", "hello", "salut", "hi", "start"})),
)
_WORD = re.compile(r"[a-z0-9]+")
_OFF = frozenset({"off", "non", "no", "desactiver", "disable"})


def normalise(text: str) -> str:
    """Lower case, accents and punctuation gone, words separated by one space."""
    plain = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return " ".join(_WORD.findall(plain))


def parse(text: str | None = None, payload: str | None = None) -> Intent | None:
    """The intent of one message: its payload if it is one of ours, else its text."""
    if payload is not None and payload in PAYLOADS:
        return PAYLOADS[payload]
    if not text:
        return None
    if text.strip() == "?":
        return "HELP"
    if "résumé" in text.lower():  # French for summary; "resume" alone is English's RESUME
        return "MONTH"
    words = normalise(text)
    if words in _PHRASES:
        return _PHRASES[words]
    found = set(words.split())
    for intent, keywords in _KEYWORDS:
        if found & keywords:
            if intent == "DISCREET_ON" and found & _OFF:
                return "DISCREET_OFF"
            return intent
    return None
