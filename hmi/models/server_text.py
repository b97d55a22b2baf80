"""The server's own English on the diagnostics page, in the console's language where its shape is known.

The server writes its subsystems' details and its drivers' last errors in English (``GET /health``: they are
its log lines too). The console translates the ones with a stable shape from the catalogue below, part by
part, and shows any other part whole, marked as the server's words::

    "1836 alarms from 21 rules; 0 states restored from the journal"
        │ split on "; " and " | "
        ▼
    "1836 alarms from 21 rules" ─ PATTERNS ─► _("{alarms} alarms from {rules} rules") ─► "1 836 alarmes issues de…"
    "0 states restored from …"  ─ PATTERNS ─► …                                      ─► "0 états repris du journal"
    "ModbusIOException: [Input/Output] …" (no pattern) ──────────────► "message du serveur : ModbusIOException: …"

A pattern is a regular expression over the whole part with named groups, and an English msgid taking the
same names (a group of digits is shown as a number of the console's language). A URL or a file path is data:
shown as it is. Adding a pattern here is how a new server text becomes French.
"""

from __future__ import annotations

import re
from typing import Final

from scada.format import number
from scada.i18n import N_, _

#: (the part, whole), msgid — the server's texts: server/components/*.py (details), scada/poll.py (errors)
PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = tuple((re.compile(rx), msgid) for rx, msgid in (
    # subsystem details (GET /health subsystems.*.detail)
    (r"(?P<n>\d+) tags", N_("{n} tag(s)")),
    (r"(?P<alarms>\d+) alarms from (?P<rules>\d+) rules", N_("{alarms} alarms from {rules} rules")),
    (r"(?P<n>\d+) states restored from the journal", N_("{n} states restored from the journal")),
    (r"(?P<name>[\w-]+) backend", N_("{name} backend")),
    (r"historian disabled in the settings \(historian\.backend: none\)",
     N_("historian disabled in the settings (historian.backend: none)")),
    (r"(?P<n>\d+) devices", N_("{n} devices")),
    (r"(?P<read>\d+)/(?P<total>\d+) devices read", N_("{read}/{total} devices read")),
    (r"(?P<n>\d+) devices polled", N_("{n} devices polled")),
    (r"(?P<n>\d+) not polled, no driver for (?P<what>.+)", N_("{n} not polled, no driver for {what}")),
    (r"standby: not polling, fed by the active server's replication",
     N_("standby: not polling, fed by the active server's replication")),
    (r"no edge partition", N_("no edge partition")),
    (r"(?P<n>\d+) edge partition\(s\) online", N_("{n} edge partition(s) online")),
    (r"(?P<n>\d+) edge partition\(s\) via (?P<what>.+)", N_("{n} edge partition(s) via {what}")),
    (r"broker unreachable: (?P<what>.+)", N_("broker unreachable: {what}")),
    (r"edge offline: (?P<what>.+)", N_("edge offline: {what}")),
    (r"(?P<types>\d+) commandable types, (?P<plans>\d+) crisis plans",
     N_("{types} commandable types, {plans} crisis plans")),
    (r"layouts: (?P<n>\d+) verified against the field", N_("layouts: {n} verified against the field")),
    (r"(?P<crews>\d+) crews, (?P<services>\d+) services from no crews\.yaml \(default SLAs, no crews\)",
     N_("{crews} crews, {services} services: no crews.yaml (default SLAs, no crews)")),
    (r"(?P<crews>\d+) crews, (?P<services>\d+) services from (?P<file>/\S+)",
     N_("{crews} crews, {services} services from {file}")),
    (r"(?P<n>\d+) rule\(s\) with work_order: auto", N_("{n} rule(s) with work_order: auto")),
    (r"processing failed \(see the log\)", N_("processing failed (see the log)")),
    (r"retrying", N_("retrying")),
    (r"closed", N_("closed")),
    # drivers' last errors (GET /health subsystems.poll.stats.per_device.*.last_error)
    (r"no answer", N_("no answer")),
    (r"TimeoutError: cycle did not finish within (?P<seconds>[\d.]+) s",
     N_("no answer: the read cycle did not finish within {seconds} s")),
    (r"TimeoutError", N_("no answer in time")),
    (r"ConnectionRefusedError\b.*", N_("connection refused")),
    (r"(?:ConnectionResetError|BrokenPipeError|IncompleteReadError)\b.*", N_("connection lost")),
))
#: data rather than words: shown as they are
DATA: Final = re.compile(r"(?:https?://|/)\S*")
SEPARATORS: Final = re.compile(r"(; | \| )")
SERVER_MESSAGE: Final = N_("server message: {text}")


def _part(text: str) -> str:
    if not text or DATA.fullmatch(text):
        return text
    for rx, msgid in PATTERNS:
        m = rx.fullmatch(text)
        if m is not None:
            return _(msgid).format(**{k: number(int(v)) if v.isdigit() else v for k, v in m.groupdict().items()})
    return _(SERVER_MESSAGE).format(text=text)


def server_text(text: str) -> str:
    """A detail or error the server wrote, in the console's language (see the module docstring)."""
    return "".join(sep if k % 2 else _part(sep) for k, sep in enumerate(SEPARATORS.split(text.strip())))


def untranslated(text: str) -> bool:
    """Whether a text :func:`server_text` made is only the server's words, marked as such (the French walk lets
    these through, as a person reads them: quoted, not the console's own)."""
    prefix = _(SERVER_MESSAGE).split("{text}")[0]
    return text.startswith(prefix)
