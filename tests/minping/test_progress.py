"""Progress of long steps: shown on a terminal only, never with --json."""

from __future__ import annotations

import io
import sys
from datetime import UTC, datetime

from minping import draws
from minping.commands.sample import _phase_printer, _progress_printer
from minping.frames import import_frame
from tests.minping.test_draw_pinned import cfg, frame_file  # noqa: F401  (fixtures)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_only(monkeypatch, db, cfg, frame_file):  # noqa: F811
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert _progress_printer() is None and _phase_printer() is None
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert _progress_printer(as_json=True) is None and _phase_printer(as_json=True) is None
    with db.transaction() as s:
        import_frame(s, cfg, frame_file, progress=_progress_printer())
    assert "rows/s" in term.getvalue() and "reading 3,000 rows" in term.getvalue()
    term.seek(0)
    term.truncate()
    with db.transaction() as s:
        draws.draw_sample(s, cfg, size=300, seed=1, now=datetime(2026, 11, 20, tzinfo=UTC),
                          progress=_phase_printer())
    with db.session() as s:
        assert draws.verify(s, cfg, progress=_phase_printer())["matches"]
    shown = term.getvalue()
    for phase in ("reading the frame", "drawing", "hashing the frame", "storing the cases",
                  "re-deriving the draw", "checking the units"):
        assert phase in shown
