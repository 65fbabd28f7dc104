"""The document format of the token cache file: its marker, its version, its salvage.

No I/O: ``_private_file.py`` reads and writes the bytes for ``FileTokenCache``.

A file is ours when it starts with the marker (``{"format": FORMAT_MARKER,
"version": 1, ..., "entries": {...}}``; the marker is written first, so a
truncated file still says whose it is), or has the exact layout written by
hoxton-auth 0.1 (``{"version": 1, "entries": {...}}``). ``version`` is a major
version: additive changes keep it, and fields or entries this version does
not understand are written back as they were. A newer major version is not
ours to rewrite. A damaged file of ours is salvaged: its complete entries are
kept, found in one pass whose cost is linear in the file size (issue 11).
"""

from __future__ import annotations

import json
import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _cli.py)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "FORMAT_MARKER",
    "FORMAT_VERSION",
    "NOT_OURS",
    "Decoded",
    "begins_as_ours",
    "decode",
    "encode",
    "is_sealed",
    "salvage",
]

FORMAT_MARKER = "hoxton-auth token cache"
FORMAT_VERSION = 1
# Patterns, compiled on first use by ``re`` (and kept in its cache): only a
# damaged file needs them, and a cached `hoxton-auth token` compiles none.
# The start of one entry in a damaged file: a 32-hex-digit key, then an object.
_ENTRY_START = r'"([0-9a-f]{32})"\s*:\s*(?=\{)'
# How a damaged file of ours begins: the marker, or 0.1's layout.
_OURS = (
    r'\s*\{\s*(?:"format"\s*:\s*"hoxton-auth token cache"'
    r'|"entries"\s*:\s*\{|"version"\s*:\s*1\s*,\s*"entries"\s*:\s*\{)'
)
# A run of digits at least this long: where a number past int's digit limit is
# (sys.get_int_max_str_digits, 4,300 by default; a user may only raise it).
_LONG_NUMBER = r"[0-9]{4000,}"
_FIRST_WINDOW = 256  # characters a salvage attempt decodes first; doubled while needed
_MAX_ENTRY_CHARS = 256 * 1024  # far more than one entry (two JWTs and labels) needs
#: Why a file that is not a hoxton-auth document is refused (``Decoded.refused``).
NOT_OURS = "it is not a hoxton-auth token cache"


class Decoded:
    """What a cache file holds.

    Attributes:
        document: ``{"entries": {key: raw entry}, ...}`` plus any unknown fields.
        refused: Why the file is not ours to read or rewrite, or ``None``.
        damage: What was wrong with a file of ours (the rest was salvaged), or ``None``.
    """

    __slots__ = ("damage", "document", "refused")

    def __init__(
        self, document: dict[str, Any], refused: str | None = None, damage: str | None = None
    ) -> None:
        self.document = document
        self.refused = refused
        self.damage = damage


def is_sealed(value: object) -> bool:
    """Whether a token field holds a sealed value (``_sealing.py``), not the token itself:
    ``{"sealed": <base64 of nonce and ciphertext>, "key": <the data key's id>}``.

    hoxton-auth 0.2.0.dev0 and earlier (0.2.0.dev1 brought sealing) read such
    an entry as damage of its kind (a token that is not a string): they skip it.
    """
    return (
        isinstance(value, dict)
        and len(value) == 2
        and isinstance(value.get("sealed"), str)
        and isinstance(value.get("key"), str)
    )


def begins_as_ours(text: str) -> bool:
    """Whether ``text`` begins as a cache file of ours (the marker, or 0.1's layout)."""
    return re.match(_OURS, text) is not None


def decode(text: str) -> Decoded:
    """The document in ``text``: ours, ours but damaged, or refused."""
    if not text.strip():
        return Decoded({"entries": {}}, damage="is empty")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
        if not re.match(_OURS, text):
            return Decoded({}, refused=NOT_OURS)
        kept, _ = salvage(text)
        return Decoded(
            {"entries": kept},
            damage=f"is not valid JSON (its {len(kept)} complete entries are kept)",
        )
    legacy = (
        isinstance(document, dict)
        and set(document) == {"version", "entries"}
        and document["version"] == 1
    )
    if not legacy and not (isinstance(document, dict) and document.get("format") == FORMAT_MARKER):
        return Decoded({}, refused=NOT_OURS)
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION:
        return Decoded(
            {},
            refused=f"it has format version {repr(version)[:40]}, written by a newer "
            f"hoxton-auth (this one writes version {FORMAT_VERSION}); upgrade hoxton-auth",
        )
    if not isinstance(document.get("entries"), dict):
        return Decoded({**document, "entries": {}}, damage="has no entries object")
    return Decoded(document)


def encode(document: dict[str, Any], entries: dict[str, Any]) -> bytes:
    """The file for ``entries``, keeping ``document``'s other fields as they were.

    The marker first, then one entry per line, each compact: json's C encoder
    writes it (``indent`` would take the pure-Python one, ~8x slower, and a
    back end's file holds thousands of entries, rewritten whole; issue 21).
    """
    rest = {k: v for k, v in document.items() if k not in ("format", "version", "entries")}
    head = json.dumps({"format": FORMAT_MARKER, "version": FORMAT_VERSION, **rest})
    dumps = json.dumps
    lines = ",\n".join(f"{dumps(key)}: {dumps(entries[key])}" for key in sorted(entries))
    return f'{head[:-1]}, "entries": {{\n{lines}\n}}}}\n'.encode()


def salvage(text: str) -> tuple[dict[str, Any], int]:
    """The complete entries of a damaged document, and the characters decoded.

    Linear: each decode attempt is windowed, and the scan resumes where the
    attempt stopped (an entry never starts inside another value), so crafted
    damage cannot make the work quadratic (0.1: 0.9 MB cost 22 s).
    """
    decoder = json.JSONDecoder()
    found: dict[str, Any] = {}
    work, position = 0, 0
    entry_start = re.compile(_ENTRY_START)
    while (match := entry_start.search(text, position)) is not None:
        start, window = match.end(), _FIRST_WINDOW
        while True:
            piece = text[start : start + window]
            work += len(piece)
            try:
                value, end = decoder.raw_decode(piece)
            except RecursionError:  # nested too deep to be an entry: skip what was seen
                position = start + len(piece)
                break
            except ValueError as exc:
                if not isinstance(exc, json.JSONDecodeError):
                    # A number past int's 4,300-digit limit: this entry is damage; the
                    # scan resumes after that number, so the next entry is found (issue 22).
                    number = re.compile(_LONG_NUMBER).search(text, start, start + len(piece))
                    position = number.end() if number else start + len(piece)
                    break
                # Failed at the end of the piece (or inside a string running past it):
                # the text may go on, so look further; else resume a little before
                # the failure (a cut entry may run into the next one).
                # (16: a literal cut short, "nul" or "-Infinit", fails where it starts.)
                at_end = exc.pos >= len(piece) - 16 or exc.msg.startswith("Unterminated string")
                if at_end and len(piece) == window < _MAX_ENTRY_CHARS:
                    window *= 2
                    continue
                position = max(match.end(), start + (len(piece) if at_end else exc.pos) - 64)
                break
            if isinstance(value, dict) and "token" in value:
                found[match.group(1)] = value
            position = start + end
            break
    return found, work
