"""The statistician's page on a real draw: balance per unit (raters by group against the
expected counts, chi-square, holes) as ``minping sample balance`` computes it, and
response rates per stratum and by mode."""

from __future__ import annotations

import re

from cati.i18n import ZH
from minping import draws
from minping.draws.balance import balance_report
from minping.frames import import_frame
from tests.cati.helpers import add_user
from tests.cati.test_views import login
from tests.minping.test_draw_pinned import SEED, frame_file  # noqa: F401  (fixture)
from tests.minping.test_release import NOW, cfg  # noqa: F401  (fixture)


def test_statistics_page_shows_the_cli_balance(app, db, cfg, frame_file):  # noqa: F811
    with db.transaction() as s:
        import_frame(s, cfg, frame_file)
    with db.transaction() as s:
        draws.draw_sample(s, cfg, size=300, seed=SEED, replicates=2, reserve=3, now=NOW)
        draws.release(s, cfg, next_=True, now=NOW)
    add_user(db, "stan", role="statistician")
    client = app.test_client()
    login(client, "stan")
    page = client.get("/cati/statistics").get_data(as_text=True)
    with db.session() as s:
        cli = balance_report(s, cfg)
    rows = re.findall(r'<tr class="(fail)?" data-unit="([^"]+)">', page)
    assert [u for _f, u in rows] == [u["unit"] for u in cli["units"]]  # failing units first
    assert sum(f == "fail" for f, _u in rows) == cli["failing_units"]
    first = cli["units"][0]
    p = "—" if first["p_value"] is None else f"{first['p_value']:.3f}"
    assert re.search(rf'data-unit="{first["unit"]}">.*?<td class="num">{re.escape(p)}</td>',
                     page, re.S)
    # rates: overall, then one row per stratum (nothing dialled yet: no mode row)
    assert page.count('<tr class="stratum">') == len(cli["strata"])
    assert ZH["Balance per unit"] in page and ZH["Live scores (phone)"] in page
