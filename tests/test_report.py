"""The HTML report: self-contained, escaped, and really rendered by a headless browser."""
import os
import shutil
from pathlib import Path

import pytest

from conftest import FAMILIES_CONFIG, PROJECT_ROOT, make_image_dataset
from pipelines import extract, fit, report

HOSTILE = "<script>alert(1)</script>.png"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    root = base / "data"
    make_image_dataset(root, n=30, extra_names=[HOSTILE])
    config = base / "config.yaml"
    config.write_text(FAMILIES_CONFIG)
    features = base / "features.parquet"
    assert extract.main(["--config", str(config), "--data-root", str(root), "--out",
                         str(features), "--n-jobs", "1"]) == 0
    run = base / "run"
    assert fit.main(["--features", str(features), "--out", str(run), "--folds", "3"]) == 0
    return run


def test_report_escapes_names_from_data(run_dir):
    page = (run_dir / "report.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in page
    assert "<script>alert(1)</script>" not in page


def test_report_is_rebuilt_by_its_command(run_dir):
    (run_dir / "report.html").unlink()
    assert report.main([str(run_dir)]) == 0
    assert (run_dir / "report.html").is_file()


def test_report_without_run_folder_is_a_clear_error(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    assert "no metrics.json" in capsys.readouterr().err


@pytest.mark.browser
def test_report_renders_offline_in_headless_chromium(run_dir):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    url = (run_dir / "report.html").resolve().as_uri()
    requests, console_errors, dialogs = [], [], []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})

        def block(route):
            requests.append(route.request.url)
            if route.request.url == url:
                route.continue_()
            else:
                route.abort()

        page.route("**/*", block)
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console_errors.append(str(e)))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url, wait_until="load")
        page.wait_for_selector(".js-plotly-plot .main-svg")
        for section in ("metrics", "importance", "scores", "errors", "run"):
            assert page.locator(f"section#{section}").count() == 1
        assert page.locator(".js-plotly-plot").count() >= 8  # ROC x2, importance x4, scores x2
        assert page.locator("#errors figure img").count() >= 1  # embedded thumbnails
        assert HOSTILE in page.locator("body").inner_text()  # shown as text
        artefacts = Path(os.environ.get("TEST_ARTIFACTS", PROJECT_ROOT / "reports" / "test-artifacts"))
        artefacts.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(artefacts / "report.png"), full_page=True)
        browser.close()
    assert requests == [url], f"requests left the file: {requests}"
    assert console_errors == []
    assert dialogs == []
