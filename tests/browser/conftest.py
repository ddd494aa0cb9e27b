"""The browser layer: Debian's Chromium, headless, driven by Playwright's Python package against
a real `ser up` stack (tests/harness.py EmbeddedStack) with an API key set.

Chromium is Debian's package (`make browser` installs it; `make test` runs that step first);
Playwright never downloads a browser here. Where Chromium or Playwright is missing, every test
of this folder skips, saying why. Screenshots of every view go to .ser/screenshots/.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.fixtures import API_KEY
from tests.harness import Api, EmbeddedStack, stack_env

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".ser" / "screenshots"
TIMEOUT_MS = 180_000  # conditions on a busy 2-core machine: a training takes tens of seconds


def chromium_path() -> str | None:
    """Debian's Chromium (SER_CHROMIUM overrides the path)."""
    given = os.environ.get("SER_CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (per module: its event loop is gone before other tests run)."""
    path = chromium_path()
    if path is None:
        pytest.skip(
            "Chromium not found: `make browser` installs Debian's chromium package "
            "(apt-get, as root or with sudo); it could not be installed here"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright's Python package is missing: make install")
    with sync_playwright() as pw:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # root: Chromium's sandbox refuses
        # a fake microphone (a beep), granted without asking: the recording test
        args += ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
        browser = pw.chromium.launch(executable_path=path, headless=True, args=args)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def console_stack(data_dir, tmp_path_factory):
    """`ser up` (its own Redis, a train and a predict node, the API) with SER_API_KEY set; per
    module, so it stops once the browser tests are done."""
    tmp = tmp_path_factory.mktemp("console")
    env = stack_env(None, data_dir, tmp / "state", SER_API_KEY=API_KEY)
    with EmbeddedStack(env, tmp) as up:
        yield up


@pytest.fixture(scope="module")
def console_api(console_stack) -> Api:
    return Api(console_stack.base, API_KEY)


@pytest.fixture(scope="module")
def console_trained(console_api) -> dict:
    """A first model (the fast feature set), trained through the API."""
    return console_api.train("ds", timeout=240, features="seed")


def _page(browser, base: str, key: str | None, **context):
    ctx = browser.new_context(
        viewport={"width": 1280, "height": 800}, accept_downloads=True, **context
    )
    if key is not None:  # as if the key had been given in this tab already
        ctx.add_init_script(f"sessionStorage.setItem('ser-api-key', {key!r})")
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return ctx, page


@pytest.fixture
def page(browser, console_stack):
    """A tab on the console's origin whose API key is already given."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    ctx, page = _page(browser, console_stack.base, API_KEY)
    yield page
    ctx.close()


@pytest.fixture
def fresh_page(browser, console_stack):
    """A tab that has not been given the API key."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    ctx, page = _page(browser, console_stack.base, None)
    yield page
    ctx.close()


def shot(page, name: str) -> Path:
    """A full-page screenshot into .ser/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
