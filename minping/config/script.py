"""The ``[script.<lang>]`` tables: what a live interviewer reads (CATI), per language.

The IVR reads ``[prompts]`` (with its key presses); an interviewer reads this:
``introduction`` (who calls and why), ``consent`` (may we talk now, with a person),
``question`` (one unit, with the answer options to read: ``{unit}`` is required,
``{options}`` is filled with the scale's labels), and ``closing``.  One table per
prompt language.  Placeholders: ``{center}``, ``{campaign}`` and ``{interviewer}``
anywhere; ``{unit}``, ``{track}`` and ``{options}`` in ``question``.
"""

from __future__ import annotations

from collections.abc import Mapping

from minping.config.checks import _Check, _join, _show
from minping.config.model import _frozen
from minping.config.sections import _template_texts

SCRIPT_KEYS = ("introduction", "consent", "question", "closing")
_COMMON = frozenset({"center", "campaign", "interviewer"})
_FIELDS = {key: _COMMON for key in SCRIPT_KEYS}
_FIELDS["question"] = _COMMON | {"unit", "track", "options"}
_REQUIRED = {"question": frozenset({"unit"})}


def _script(check: _Check, data: dict, languages: list[str] | None
            ) -> Mapping[str, Mapping[str, str]] | None:
    t = check.table(data, "script", "")
    if t is None:
        return None
    mark = check.mark()
    texts: dict[str, dict[str, str]] = {}
    for lang, table in t.items():
        lp = _join("script", lang)
        if languages is not None and lang not in languages:
            check.add(lp, f"no [prompts.{lang}] table for this language")
            continue
        if not isinstance(table, dict):
            check.add(lp, f"must be a table, got {_show(table)}")
            continue
        check.unknown(table, lp, SCRIPT_KEYS)
        texts[lang] = _template_texts(check, table, lp, _FIELDS, _REQUIRED)
    for lang in languages or ():
        if lang not in t:
            check.add(_join("script", lang), "missing: the interviewer's script in this "
                      "prompt language (introduction, consent, question, closing)")
    if not check.clean_since(mark):
        return None
    return _frozen({lang: _frozen(v) for lang, v in texts.items()})
