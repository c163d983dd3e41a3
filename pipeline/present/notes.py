"""A reason that several rows of a table share, stated once below it: the rows point to the note.

Reasons are written per row (a manifest's `verified_on` record, a selection's reason), so two rows give the same
reason in words that differ only by the row's own names: its target, its provider, a digest. `Notes` compares
reasons with those replaced by what they are ("the row's target"), and a reason that two or more rows share
becomes a numbered note written once with those words; a reason of one row stays in its row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape

# A name matches where it stands alone: `web` in `web/verify.py` and `web.json`, not in `onnxruntime-web`.
_ALONE = r"(?<![\w-]){}(?![\w-])"
_DIGEST = re.compile(r"\b[0-9a-f]{12,64}\b")


@dataclass
class Notes:
    """Collects the reasons of one table's rows (`add`), then gives each row its cell (`cell`) and the notes."""
    texts: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    def add(self, text: str, names: dict[str, str]) -> int:
        """Register a row's reason; `names` maps each of the row's own names to what it is ("target")."""
        key = _DIGEST.sub("…", text)
        for name, role in sorted(names.items(), key=lambda item: -len(item[0])):  # a provider before its target
            key = re.sub(_ALONE.format(re.escape(name)), f"\0{role}\0", key)
        self.texts.append(text)
        self.keys.append(key)
        return len(self.keys) - 1

    def _numbered(self) -> dict[str, int]:
        shared = [k for k in dict.fromkeys(self.keys) if self.keys.count(k) > 1]
        return {key: number for number, key in enumerate(shared, 1)}

    def cell(self, row: int, lead: str = "") -> str:
        """The row's reason (escaped HTML), or a pointer to the note that states it."""
        number = self._numbered().get(self.keys[row])
        return f"{lead}see note {number}" if number else f"{lead}{escape(self.texts[row])}"

    def html(self) -> str:
        """The shared reasons, numbered, each once; the row's own names in italics."""
        numbered = self._numbered()
        if not numbered:
            return ""
        roles = sorted({role for key in numbered for role in key.split("\0")[1::2]})
        stand = (f"<p class='note'>In the notes, {' and '.join(f'<i>{r.upper()}</i>' for r in roles)} stand"
                 f"{'s' if len(roles) == 1 else ''} for the row's {' and '.join(roles)}.</p>") if roles else ""
        items = "".join(f"<li>{_placeholders(key)}</li>" for key in numbered)
        return f"<ol class='notes'>{items}</ol>{stand}"


def _placeholders(key: str) -> str:
    parts = key.split("\0")  # text, role, text, role, …
    return "".join(escape(part) if i % 2 == 0 else f"<i>{escape(part.upper())}</i>" for i, part in enumerate(parts))
