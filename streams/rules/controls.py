"""The chat's other answers: controls confirmed, the HELP menu, a psid with no account.

Pure functions like `streams.rules.replies` (whose `response` builds each one):
none of them carries bank data, only the masked account it is about.
"""

from __future__ import annotations

from streams.model import Notification, QuickReply
from streams.rules.intents import PAYLOAD_PREFIX, Intent
from streams.rules.notify import french, masked_only
from streams.rules.replies import Asked, To, response

_CONFIRM: dict[Intent, tuple[str, str]] = {
    "STOP": (
        "C’est noté\u00a0: plus aucune notification pour le compte {m}. Nous avons demandé "
        "à votre banque de mettre fin au partage.",
        "Done: no more notifications for account {m}. We have asked your bank to end the sharing.",
    ),
    "PAUSE": (
        "Notifications en pause pour le compte {m}. "
        "Envoyez «\u00a0reprendre\u00a0» pour les relancer.",
        "Notifications paused for account {m}. Send “resume” to restart them.",
    ),
    "RESUME": (
        "Notifications reprises pour le compte {m}.",
        "Notifications resumed for account {m}.",
    ),
    "DISCREET_ON": (
        "Mode discret activé pour le compte {m}\u00a0: ni montant, ni commerçant, ni solde.",
        "Discreet mode on for account {m}: no amount, merchant or balance.",
    ),
    "DISCREET_OFF": (
        "Mode discret désactivé pour le compte {m}.",
        "Discreet mode off for account {m}.",
    ),
}
_STOPPED = (
    "Les notifications du compte {m} sont arrêtées\u00a0: un nouveau consentement, donné "
    "dans l’application de votre banque, les relancera.",
    "Notifications for account {m} are stopped: a new consent, given in your bank’s app, "
    "will restart them.",
)


def confirmation(asked: Asked, to: To, still_stopped: bool, now_ms: int) -> Notification:
    """The answer to a control (STOP, PAUSE, RESUME, DISCREET on/off)."""
    fr_text, en_text = _STOPPED if still_stopped else _CONFIRM[asked.intent]
    text = (fr_text if french(to.locale) else en_text).format(m=to.masked)
    return response(asked, to, text, now_ms)


_HELP_CHOICES: tuple[tuple[Intent, str, str], ...] = (
    ("BALANCE", "Solde", "Balance"),
    ("RECENT", "Opérations", "Transactions"),
    ("MONTH", "Ce mois", "This month"),
    ("PAUSE", "Pause", "Pause"),
    ("DISCREET_ON", "Discret", "Discreet"),
    ("STOP", "Stop", "Stop"),
)


def help_reply(asked: Asked, to: To, now_ms: int) -> Notification:
    """What can be asked, as quick replies; about no account in particular."""
    fr = french(to.locale)
    text = (
        "Vous pouvez demander\u00a0: solde, dernières opérations, ce mois. "
        "Et aussi\u00a0: pause, reprendre, discret, stop."
        if fr
        else "You can ask: balance, last transactions, this month. "
        "And also: pause, resume, discreet, stop."
    )
    choices: list[QuickReply] = [
        {"title": fr_title if fr else en_title, "payload": f"{PAYLOAD_PREFIX}{intent}"}
        for intent, fr_title, en_title in _HELP_CHOICES
    ]
    return response(asked, to, text, now_ms, masked_only(None), choices)


def unlinked(asked: Asked, now_ms: int) -> Notification:
    """To a psid no consent names: how to link an account, in both languages."""
    text = (
        "Aucun compte n’est relié à cette conversation\u00a0: activez le service dans "
        "l’application de votre banque. / No account is linked to this chat: turn the "
        "service on in your bank’s app."
    )
    return response(asked, To("", "", "", "", asked.locale), text, now_ms, masked_only(None))
