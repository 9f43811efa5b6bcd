"""``mdq report`` on the demo data, opened in a real headless Chromium (Debian's package).

One module-scoped database holds the shipped real files, checked once at the demo's instant;
the report is written once and every test reads it. Browser tests need ``chromium`` and
``chromium-driver`` (``.ci/run`` installs them when it runs as root); screenshots go to
``test-output/report/`` in the repository (ignored by git) for a person to look at.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mdq.backfill_core import load_sample_data
from mdq.db import Database, connect
from mdq.db.migrate import apply_migrations
from mdq.quality import run_quality_checks
from mdq.report import CELL_STATES, ReportSummary, series_slug, write_report

pytestmark = [pytest.mark.integration, pytest.mark.dbt]

AS_OF = datetime(2026, 8, 6, 15, 0, tzinfo=UTC)  # the demo's instant (tests/integration/test_demo)
HOLE_START = datetime(2017, 3, 15, 10, 0, tzinfo=UTC)  # a Wednesday of the EURUSD file
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "report"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ROWS = "return document.querySelectorAll('#findings-table tbody tr').length"


@pytest.fixture(scope="module")
def demo(make_database: Callable[[], Database]) -> Database:
    database = make_database()
    with connect(database) as conn:
        apply_migrations(conn)
    load_sample_data(database)
    with connect(database, autocommit=True) as conn:  # a real hole, injected: 4 hours
        conn.execute(
            "delete from market_data where symbol = 'EURUSD' and timeframe = '1h'"
            " and ts >= %s and ts < %s",
            (HOLE_START, HOLE_START + timedelta(hours=4)),
        )
    run_quality_checks(database, "mdq", as_of=AS_OF, use_prefect=False, record=True)
    return database


@pytest.fixture(scope="module")
def report(demo: Database, tmp_path_factory: pytest.TempPathFactory) -> ReportSummary:
    return write_report(demo, tmp_path_factory.mktemp("report"))


def page_data(page: Path, name: str) -> Any:
    """The JSON a page embeds as ``const <name> = …;``."""
    match = re.search(rf"const {name} = (.*?);(?:\n|</script>)", page.read_text(), re.S)
    assert match, f"{name} not in {page}"
    return json.loads(match.group(1))


def open_findings(database: Database, **where: str) -> list[tuple[Any, ...]]:
    clauses = " and ".join(f"{k} = %({k})s" for k in where)
    with connect(database) as conn:
        return conn.execute(
            "select anomaly_id, ts_start, ts_end from data_anomalies"
            f" where status = 'open' and {clauses} order by ts_start",  # keys are this file's
            where,
        ).fetchall()


def test_the_report_is_one_offline_folder(report: ReportSummary) -> None:
    files = {p.relative_to(report.out_dir).as_posix() for p in report.out_dir.rglob("*")}
    assert {"index.html", "assets/plotly.min.js", "assets/report.js", "assets/report.css"} <= files
    assert report.series == 8 and len(report.series_pages) == 8
    for page in [report.index, *report.series_pages]:
        text = page.read_text()
        assert "http://" not in text and "https://" not in text, f"{page} loads from the web"
        for src in re.findall(r'(?:src|href)="([^"#]+)"', text):
            assert (page.parent / src).resolve().is_file(), f"{page.name}: {src} missing"


def test_the_overview_counts_what_the_database_holds(report: ReportSummary, demo: Database) -> None:
    overview = page_data(report.index, "MDQ_OVERVIEW")
    with connect(demo) as conn:
        errors, warnings = conn.execute(
            "select count(*) filter (where severity = 'error'),"
            " count(*) filter (where severity = 'warn')"
            " from data_anomalies where status = 'open'"
        ).fetchone()
        candles = conn.execute("select count(*) from market_data").fetchone()[0]
    assert (overview["open_errors"], overview["open_warnings"]) == (errors, warnings)
    assert (report.open_errors, report.open_warnings) == (errors, warnings)
    assert overview["series"] == 8 and overview["candles"] == candles == 40_872 - 4
    assert overview["new_since_previous"] == errors + warnings  # the first run found them all
    assert overview["trend"] == [{"run": overview["last_run"], "error": errors, "warn": warnings}]


def test_the_heatmap_marks_the_eurusd_hole(report: ReportSummary, demo: Database) -> None:
    heatmap = page_data(report.index, "MDQ_HEATMAP")
    assert heatmap["unit"] == "week"  # 13 years of AAPL daily bars: weeks, not days
    row = heatmap["y"].index("EURUSD 1h")
    assert heatmap["links"][row] == f"series/{series_slug('EURUSD', '1h')}.html"
    gaps = open_findings(demo, symbol="EURUSD", check_name="candle_gaps")
    assert [(g[1], g[2]) for g in gaps] == [(HOLE_START, HOLE_START + timedelta(hours=3))]
    cells = dict(zip(heatmap["x"], heatmap["z"][row], strict=True))
    assert CELL_STATES[cells["2017-03-13"]] == "partial"  # the week of the hole
    assert CELL_STATES[cells["2017-03-06"]] == "complete"
    assert CELL_STATES[cells["2017-12-25"]] == "complete"  # Christmas: closed, not a hole
    assert CELL_STATES[cells["2012-03-05"]] == "not loaded"  # AAPL daily, before EURUSD
    assert "2015-03-02" not in cells  # no series has data then: the column is left out


def test_each_series_page_carries_its_findings_and_known_actions(
    report: ReportSummary, demo: Database
) -> None:
    page = report.out_dir / "series" / f"{series_slug('AAPL', '1d')}.html"
    meta = page_data(page, "MDQ_SERIES")
    splits = open_findings(demo, symbol="AAPL", timeframe="1d", anomaly_type="split_suspect")
    assert len(splits) == 2  # 2000-06-21 and 2005-02-28 (README)
    marked = [f for f in meta["findings"] if f["type"] == "split_suspect"]
    assert sorted(f["id"] for f in marked) == sorted(s[0] for s in splits)
    assert meta["bucket_candles"] == 2  # 3,270 daily bars > MAX_VIEW_CANDLES
    view = page_data(page, "MDQ_VIEW")
    assert len(base64.b64decode(view["t"])) == 1_635 * 8  # 3,270 candles in bars of 2
    full = (page.parent / meta["full_src"]).read_text()
    columns = json.loads(full.split(" = ", 2)[-1].rstrip(";\n"))
    times = np.frombuffer(base64.b64decode(columns["t"]), dtype="<f8")
    closes = np.frombuffer(base64.b64decode(columns["c"]), dtype="<f8")
    with connect(demo) as conn:
        first, last, count = conn.execute(
            "select (array_agg(close order by ts))[1], (array_agg(close order by ts desc))[1],"
            " count(*) from market_data where symbol = 'AAPL' and timeframe = '1d'"
        ).fetchone()
    assert len(times) == count == 3_270
    assert (closes[0], closes[-1]) == (float(first), float(last))
    assert (np.diff(times) > 0).all()


# ---------------------------------------------------------------------------------------------
# in a real browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install; .ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.add_argument("--allow-file-access-from-files")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def load(browser: Any, page: Path, fragment: str = "") -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page.as_uri() + fragment)
    WebDriverWait(browser, 60).until(
        lambda d: d.execute_script("return document.querySelector('.main-svg') !== null")
    )


def console_errors(browser: Any) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def screenshot(browser: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    browser.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    return path


def test_index_page_in_chromium(browser: Any, report: ReportSummary) -> None:
    load(browser, report.index)
    findings = page_data(report.index, "MDQ_FINDINGS")
    rows = browser.execute_script(
        "return document.querySelectorAll('#findings-table tbody tr').length"
    )
    assert rows == len(findings)
    cards = browser.execute_script(
        "return document.querySelector('[data-name=\"open errors\"] .value').textContent"
    )
    assert cards == str(report.open_errors)
    # filter the table to one symbol's errors, as a person would
    browser.execute_script(
        "const s = document.getElementById('findings-filter-severity');"
        "s.value = 'error'; s.dispatchEvent(new Event('change'));"
    )
    shown = browser.execute_script(
        "return document.querySelectorAll('#findings-table tbody tr').length"
    )
    assert shown == report.open_errors + sum(
        1 for f in findings if f["severity"] == "error" and f["status"] != "open"
    )
    screenshot(browser, "index.png")
    # a click on the EURUSD row of the heatmap opens its page
    browser.execute_script(
        "document.getElementById('heatmap').emit('plotly_click', {points: [{y: 'EURUSD 1h'}]})"
    )
    assert browser.current_url.endswith(f"series/{series_slug('EURUSD', '1h')}.html")
    assert console_errors(browser) == []


def test_aapl_page_marks_its_split_suspects_in_chromium(
    browser: Any, report: ReportSummary, demo: Database
) -> None:
    page = report.out_dir / "series" / f"{series_slug('AAPL', '1d')}.html"
    load(browser, page)
    drawn = browser.execute_script(
        "const t = document.getElementById('chart').data.find(t => t.name === 'split_suspect');"
        "return t ? t.x.length : 0"
    )
    assert drawn == 2
    points = browser.execute_script(
        "const gd = document.getElementById('chart');"
        "const i = gd.data.findIndex(t => t.name === 'split_suspect');"
        "const traces = gd.querySelectorAll('.scatterlayer .trace');"
        "return traces[i - 2].querySelectorAll('.point').length"
    )
    assert points == 2
    screenshot(browser, "aapl-1d.png")
    assert console_errors(browser) == []


def test_a_finding_link_zooms_to_every_candle(browser: Any, report: ReportSummary) -> None:
    slug = series_slug("AAPL", "1m")
    page = report.out_dir / "series" / f"{slug}.html"
    meta = page_data(page, "MDQ_SERIES")
    assert meta["bucket_candles"] == 2  # 2,382 one-minute bars over the 2,000 shown at once
    day = date(2026, 8, 4)
    load(browser, page, f"#from={day.isoformat()}T16:00:00Z&to={day.isoformat()}T16:30:00Z")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(
        lambda d: "every candle" in d.find_element("id", "view-note").text
    )
    shown = browser.execute_script("return document.getElementById('chart').data[0].x.slice(0, 2)")
    assert len(shown) == 2
    first, second = (datetime.fromisoformat(x).replace(tzinfo=UTC) for x in shown)
    assert (second - first).total_seconds() == 60  # every candle, in UTC
    low, high = browser.execute_script("return document.getElementById('chart').layout.yaxis.range")
    assert 290 < low < high < 330  # the price axis fits the zoomed candles, not 13 years
    screenshot(browser, "aapl-1m-zoomed.png")
    assert console_errors(browser) == []


def test_mdq_report_command_writes_and_names_the_folder(demo: Database, tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MDQ_")}
    env.update({"MDQ_DATABASE_URL": demo.url()})
    out = tmp_path / "r"
    done = subprocess.run(
        [sys.executable, "-m", "mdq.cli", "report", "--out", str(out), "--symbols", "EURUSD"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"report written: {out.resolve() / 'index.html'} (1 series," in done.stdout
    assert len(list((out / "series").glob("*.html"))) == 1


def test_mdq_report_serve_answers_on_loopback(demo: Database, tmp_path: Path) -> None:
    import os
    import signal
    import urllib.request

    env = {k: v for k, v in os.environ.items() if not k.startswith("MDQ_")}
    env.update({"MDQ_DATABASE_URL": demo.url()})
    out = tmp_path / "served"
    server = subprocess.Popen(
        [sys.executable, "-m", "mdq.cli", "report", "--out", str(out), "--serve", "--port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert server.stderr is not None
        line = ""
        while "serving on" not in line:
            line = server.stderr.readline()
            assert line or server.poll() is None, "mdq report --serve exited"
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        with urllib.request.urlopen(url.group(0) + "index.html", timeout=30) as answer:
            assert answer.status == 200
            assert "mdq quality report" in answer.read().decode()
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=30)
