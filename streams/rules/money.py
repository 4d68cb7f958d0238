"""Amounts in minor units, formatted the way each locale writes money.

fr-FR: `1 234,56 €` (narrow no-break space between thousands, a no-break
space before the symbol); en-GB: `€1,234.56`, a minus sign in front:
`-€1,234.56`. No-break spaces keep an amount on one line in a chat bubble.
"""

from __future__ import annotations

NNBSP = "\u202f"  # narrow no-break space: French thousands separator (CLDR)
NBSP = "\u00a0"  # no-break space: between a French amount and its symbol

# ISO 4217: digits after the decimal point, for the currencies we expect;
# any other valid code falls back to 2 (the commonest exponent).
MINOR_DIGITS = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "BHD": 3, "KWD": 3, "TND": 3}
SYMBOLS = {"EUR": "€", "GBP": "£", "USD": "$", "JPY": "¥"}
# The ISO 4217 active codes a bank may send (kept short: Europe and the majors).
ISO_4217 = frozenset(
    {
        "EUR",
        "GBP",
        "USD",
        "CHF",
        "JPY",
        "SEK",
        "NOK",
        "DKK",
        "PLN",
        "CZK",
        "HUF",
        "RON",
        "BGN",
        "ISK",
        "CAD",
        "AUD",
        "NZD",
        "CNY",
        "HKD",
        "SGD",
        "KRW",
        "INR",
        "BRL",
        "MXN",
        "ZAR",
        "TRY",
        "MAD",
        "TND",
        "XOF",
        "XAF",
        "BHD",
        "KWD",
        "CLP",
        "ILS",
        "AED",
        "SAR",
    }
)


def is_currency(code: str) -> bool:
    return code in ISO_4217


def format_money(amount_minor: int, currency: str, locale: str) -> str:
    """`amount_minor` of `currency` as the locale writes it (the sign kept)."""
    digits = MINOR_DIGITS.get(currency, 2)
    sign = "-" if amount_minor < 0 else ""
    units, cents = divmod(abs(amount_minor), 10**digits)
    french = locale.startswith("fr")
    group = NNBSP if french else ","
    whole = f"{units:,}".replace(",", group)
    number = whole + ((("," if french else ".") + f"{cents:0{digits}d}") if digits else "")
    symbol = SYMBOLS.get(currency)
    if french:
        return f"{sign}{number}{NBSP}{symbol or currency}"
    if symbol:
        return f"{sign}{symbol}{number}"
    return f"{sign}{currency}{NBSP}{number}"
