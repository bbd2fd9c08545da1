"""The web UI (`foleyflow ui`) driven in a real headless browser: Debian's Chromium through Playwright's Python
package (no downloaded browser). The page is served in-process on 127.0.0.1 with a tiny untrained bundle built by
the test (2 s window); the test uploads examples/demo.mp4, generates, checks the player, the soundtrack, the timeline
image and a download, and shows an error inline. Every request the browser makes is recorded: any request to a
non-loopback address (a CDN, web fonts, analytics) fails the test, and so does any font file at all (the theme uses
system fonts). Python-side connections of the server process to non-loopback addresses fail it too.

The slow case runs the default bundle and writes the screenshots of docs/apps.md (docs/img/ui_before.png and
docs/img/ui_after.png); the fast case writes its screenshots into the test's temporary folder.
"""
from __future__ import annotations

import ipaddress
import shutil
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("gradio")
pytest.importorskip("playwright")

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo.mp4"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 90_000

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)", allow_module_level=True)


def is_loopback(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address((host or "").strip("[]")).is_loopback
    except ValueError:
        return False


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("fonts.googleapis.com") and not is_loopback("8.8.8.8") and not is_loopback(None)


class OutboundGuard:
    """Records (and refuses) connections of this process to non-loopback addresses while active."""

    def __init__(self):
        self.attempts: list[str] = []
        self._connect = socket.socket.connect
        self._connect_ex = socket.socket.connect_ex

    def _check(self, sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(str(address[0])):
            self.attempts.append(str(address))
            raise OSError(f"test: outbound connection to {address} refused")

    def __enter__(self):
        guard = self

        def connect(sock, address):
            guard._check(sock, address)
            return guard._connect(sock, address)

        def connect_ex(sock, address):
            guard._check(sock, address)
            return guard._connect_ex(sock, address)

        socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
        return self

    def __exit__(self, *exc):
        socket.socket.connect, socket.socket.connect_ex = self._connect, self._connect_ex


def serve(pipe, out_dir: Path, bundle: Path | None = None):
    """(app, url): the UI of `pipe` on a free loopback port, in this process, generating on one thread of its own
    (as `foleyflow ui` does: the progress bar must still reach the page from that thread)."""
    from concurrent.futures import ThreadPoolExecutor

    from foleyflow.commands.ui import _free_port
    from foleyflow.ui.app import build_app, launch_options

    app = build_app(pipe, out_dir, ThreadPoolExecutor(1, thread_name_prefix="foleyflow-torch"), bundle=bundle)
    port = _free_port("127.0.0.1")
    app.launch(prevent_thread_lock=True, **launch_options("127.0.0.1", port, out_dir))
    return app, f"http://127.0.0.1:{port}/"


class Browser:
    """Headless Debian Chromium with a fresh profile; records every request and aborts non-loopback ones."""

    def __init__(self, profile: Path):
        from playwright.sync_api import sync_playwright

        self.requests: list[str] = []
        self.outside: list[str] = []
        self._pw = sync_playwright().start()
        self.context = self._pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=ARGS, accept_downloads=True,
            viewport={"width": 1400, "height": 1000})
        self.context.route("**/*", self._route)
        self.context.on("request", lambda r: self.requests.append(r.url))
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)

    def _route(self, route):
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "blob") or is_loopback(url.hostname):
            return route.continue_()
        self.outside.append(route.request.url)
        return route.abort()

    def close(self):
        self.context.close()
        self._pw.stop()


def check_offline(browser: Browser) -> None:
    outside = browser.outside + [u for u in browser.requests
                                 if urlsplit(u).scheme not in ("data", "blob") and not is_loopback(urlsplit(u).hostname)]
    assert not outside, f"requests to non-loopback addresses: {sorted(set(outside))}"
    fonts = [u for u in browser.requests if urlsplit(u).path.lower().endswith((".woff", ".woff2", ".ttf", ".otf"))]
    assert not fonts, f"the page loaded font files: {fonts}"
    assert any(is_loopback(urlsplit(u).hostname) for u in browser.requests)


def upload_and_generate(page, url: str, steps: int, before_png: Path) -> None:
    page.goto(url)
    page.locator("#ff-generate").wait_for()
    assert "foleyflow" in page.title()
    page.locator("#ff-video input[type=file]").set_input_files(str(DEMO))
    page.locator("#ff-video video").wait_for()            # the uploaded clip is shown in the input player
    steps_box = page.locator("#ff-steps input[type=number]")
    steps_box.fill(str(steps))
    steps_box.press("Enter")
    page.locator("#ff-prompt textarea").fill("a red ball bouncing on a wooden floor")
    page.screenshot(path=str(before_png), full_page=True)
    watch_progress(page)
    page.locator("#ff-generate").click()
    page.locator("#ff-status").get_by_text("done:").wait_for(timeout=TIMEOUT_MS * 3)
    # the progress bar showed the sampler's steps while the job ran
    shown = page.evaluate("() => window.__ffProgress")
    assert any("step" in t for t in shown), shown


WATCH_JS = """() => {
  window.__ffProgress = [];
  const seen = (n) => { if (n.nodeType === 1 && n.matches('[class*="progress"]')) window.__ffProgress.push(n.textContent);
                        if (n.nodeType === 1) n.querySelectorAll('[class*="progress"]').forEach(
                          (m) => window.__ffProgress.push(m.textContent)); };
  new MutationObserver((ms) => ms.forEach((m) => {
    m.addedNodes.forEach(seen);
    if (m.type === 'characterData' && m.target.parentElement) seen(m.target.parentElement);
  })).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def watch_progress(page) -> None:
    """Records the text of every progress element the page shows from now on (window.__ffProgress)."""
    page.evaluate(WATCH_JS)


def check_plan_button_disabled(page) -> None:
    """The page is built without a bundle, so without a planner: the plan button is there and disabled."""
    page.get_by_text("Chain of thought (instead of a prompt").click()
    page.locator("#ff-cot-spatial textarea").wait_for()
    assert page.locator("#ff-plan").is_disabled()


def check_plan_button_plans(page, shot: Path) -> None:
    """With a bundle that has a planner: the plan button fills the four parts from the uploaded video."""
    page.get_by_text("Chain of thought (instead of a prompt").click()
    page.locator("#ff-cot-temporal textarea").wait_for()
    assert page.locator("#ff-plan").is_enabled()
    page.locator("#ff-plan").click()
    page.locator("#ff-status").get_by_text("planned").wait_for(timeout=TIMEOUT_MS * 3)
    for part in ("semantic", "temporal", "spatial"):
        assert page.locator(f"#ff-cot-{part} textarea").input_value().strip(), part
    page.screenshot(path=str(shot), full_page=True)


def check_cancel(page) -> None:
    """A long job (many steps) stops after Cancel, between sampler steps, with 'cancelled' in the status line."""
    steps_box = page.locator("#ff-steps input[type=number]")
    steps_box.fill("100")
    steps_box.press("Enter")
    watch_progress(page)
    page.locator("#ff-generate").click()
    page.wait_for_function("() => window.__ffProgress.some((t) => t.includes('step 1/'))", timeout=TIMEOUT_MS * 3)
    page.locator("#ff-cancel").click()
    page.locator("#ff-status").get_by_text("cancelled:").wait_for(timeout=TIMEOUT_MS * 2)


def check_results(page, tmp_path: Path, duration_s: float) -> None:
    # the result video plays in the page: the browser read its metadata and it lasts as long as the input
    page.wait_for_function("() => { const v = document.querySelector('#ff-result-video video');"
                           " return v && v.readyState >= 1 && v.duration > 0; }")
    got = page.evaluate("() => document.querySelector('#ff-result-video video').duration")
    assert abs(got - duration_s) < 0.2
    # the timeline PNG is displayed (decoded by the browser)
    page.wait_for_function("() => { const i = document.querySelector('#ff-timeline img');"
                           " return i && i.complete && i.naturalWidth > 300; }")
    # the soundtrack player decoded the .wav (its waveform shows the clip's duration)
    page.wait_for_function("() => { const d = document.querySelector('#ff-result-audio time#duration');"
                           " return d && d.textContent.trim() === '0:08'; }")
    # downloads: the .wav link gives the generated stereo soundtrack of the whole clip
    link = page.locator("#ff-files a[download$='.wav']").first
    with page.expect_download() as info:
        link.click()
    saved = tmp_path / "downloaded.wav"
    info.value.save_as(str(saved))
    audio, sr = sf.read(str(saved), dtype="float32", always_2d=True)
    assert audio.shape[1] == 2 and abs(audio.shape[0] / sr - duration_s) < 1e-3
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0
    assert page.locator("#ff-files a[download$='.mp4']").count() == 1
    assert page.locator("#ff-files a[download$='.timeline.png']").count() == 1


def check_error_inline(page) -> None:
    """Text-to-audio without any text: a one-line error in the status line, not a traceback or a modal."""
    page.locator("#ff-video button[aria-label='Clear']").first.click()
    page.locator("#ff-video video").wait_for(state="detached")
    page.locator("#ff-prompt textarea").fill("")
    for part in ("semantic", "temporal", "aesthetic", "spatial"):      # a plan may have filled them
        box = page.locator(f"#ff-cot-{part} textarea")
        if box.is_visible():
            box.fill("")
    page.locator("#ff-generate").click()
    status = page.locator("#ff-status").get_by_text("error:")
    status.wait_for()
    text = status.inner_text()
    assert "text-to-audio needs a prompt" in text and "Traceback" not in text and "\n" not in text.strip()


def tiny_pipeline(folder: Path):
    """A FoleyPipeline of a tiny untrained bundle written into `folder` (2 s window, fp32)."""
    import torch

    from foleyflow.bundle import build_untrained_bundle
    from foleyflow.models.text_encoder import TextEncoderConfig, load_text_encoder
    from foleyflow.models.visual import SemanticEncoderConfig, SyncEncoderConfig
    from foleyflow.pipeline import FoleyPipeline

    torch.set_num_threads(1)
    text_cfg = TextEncoderConfig(seq_len=32, part_seq_len=32)
    enc = load_text_encoder(text_cfg)
    folder = build_untrained_bundle(
        folder, window_s=2.0,
        generator_overrides=dict(hidden_dim=32, num_heads=2, num_joint_blocks=1, num_audio_blocks=1),
        semantic_cfg=SemanticEncoderConfig(image_size=32, channels=(8, 8), embed_dim=16),
        sync_cfg=SyncEncoderConfig(image_size=32, width=16, depth=1, num_heads=2, out_dim=16),
        text_cfg=text_cfg, text_encoder=enc, name="test-untrained")
    return FoleyPipeline.from_bundle(folder, text_encoder=enc, precision="fp32")


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory.mktemp("bundle") / "b")


def run_browser_case(pipe, tmp_path: Path, steps: int, shots: Path, cancel: bool = False,
                     bundle: Path | None = None) -> None:
    from foleyflow.media import probe

    duration_s = probe(DEMO).video.duration_s
    with OutboundGuard() as guard:
        app, url = serve(pipe, tmp_path / "out", bundle)
        browser = Browser(tmp_path / "profile")
        try:
            upload_and_generate(browser.page, url, steps, shots / "ui_before.png")
            check_results(browser.page, tmp_path, duration_s)
            browser.page.screenshot(path=str(shots / "ui_after.png"), full_page=True)
            if bundle is None:
                check_plan_button_disabled(browser.page)
            else:
                check_plan_button_plans(browser.page, shots / "ui_plan.png")
            if cancel:
                check_cancel(browser.page)
            check_error_inline(browser.page)
            check_offline(browser)
        finally:
            browser.close()
            app.close()
    assert not guard.attempts, f"the server tried to reach non-loopback addresses: {guard.attempts}"
    assert (shots / "ui_before.png").stat().st_size > 10_000 and (shots / "ui_after.png").stat().st_size > 10_000


def test_browser_upload_generate_play_download_offline(tiny_pipe, tmp_path):
    run_browser_case(tiny_pipe, tmp_path, steps=2, shots=tmp_path)


@pytest.mark.slow
def test_browser_default_bundle_writes_the_docs_screenshots(tmp_path):
    """The default model, few steps: the screenshots of docs/apps.md (its planner fills the four parts); then a long
    job cancelled from the page."""
    import torch

    from foleyflow.commands.generate import DEFAULT_BUNDLE
    from foleyflow.pipeline import FoleyPipeline

    torch.set_num_threads(2)
    pipe = FoleyPipeline.from_bundle(DEFAULT_BUNDLE)
    shots = ROOT / "docs" / "img"
    shots.mkdir(exist_ok=True)
    run_browser_case(pipe, tmp_path, steps=4, shots=shots, cancel=True, bundle=DEFAULT_BUNDLE)
