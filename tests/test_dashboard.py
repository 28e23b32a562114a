"""The web dashboard: end to end in a real headless browser (Selenium with Debian's chromium and
chromium-driver) against ``distqueue dashboard`` and a real redis-server; and its HTTP surface
through Starlette's test client (mounting, refusals, secrets, hostile input).

Set ``DISTQUEUE_SCREENSHOT=path.png`` to save a screenshot of the summary page.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from processes import GUARD, distqueue_command, fresh_name, wait_until
from servers import free_port, unavailable

import distqueue
from distqueue.registry import QUEUES_KEY

pytest.importorskip("starlette")
# Starlette's test client asks for an httpx successor; httpx itself works the same here.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (
            f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None
        )
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium driven by Selenium through chromedriver (Debian's packages)."""
    chromium = _find("chromium", "chromium-browser")
    driver_path = _find("chromedriver")
    if chromium is None or driver_path is None:
        unavailable(
            "chromium and chromedriver are not installed "
            "(apt-get install chromium chromium-driver; ./dev test does it under CI=true)"
        )
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=driver_path)
    )
    driver.set_page_load_timeout(GUARD)
    yield driver
    driver.quit()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@pytest.fixture
def dashboard(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start ``distqueue dashboard`` (with OPTIONS) on a free port; its base URL."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*options: str) -> str:
        port = free_port()
        log = tmp_path / f"dashboard-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                distqueue_command(
                    "dashboard",
                    "--url",
                    redis_url,
                    "--port",
                    str(port),
                    "--refresh",
                    "0.3",
                    *options,
                ),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: process.poll() is not None or _answers(base + "/"),
            "the dashboard to answer",
            show=log.read_text,
        )
        assert process.poll() is None, log.read_text()
        return base

    yield start
    for process in started:
        process.terminate()
        process.wait(GUARD)


@pytest.fixture
def busy_queue(redis_url: str) -> Iterator[tuple[distqueue.Queue[Any], Any]]:
    """A queue with 3 items waiting, 1 in flight (its message held here), 2 dead letters."""
    q: distqueue.Queue[Any] = distqueue.Queue(
        100, url=redis_url, name=fresh_name("dash"), visibility_timeout=60
    )
    q.put_many([{"job": "resize", "n": i} for i in range(6)])
    q.get_message().reject("KeyError: 'width' <script>alert(1)</script>")
    q.get_message().reject("TimeoutError: S3 did not answer")
    held = q.get_message()
    yield q, held
    held.ack()
    q.delete()
    q.close()


def cell(browser: Any, queue: str, field: str) -> str:
    from selenium.webdriver.common.by import By

    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-queue="{queue}"]')
    return str(row.find_element(By.CSS_SELECTOR, f'[data-field="{field}"]').text)


def test_pages_load_figures_match_the_server_and_an_action_works(
    browser: Any, dashboard: Callable[..., str], busy_queue: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    q, _ = busy_queue
    base = dashboard("--allow-actions")
    browser.get(base + "/")
    assert "actions allowed" in browser.find_element(By.ID, "mode").text
    assert (
        (cell(browser, q.name, "waiting"), cell(browser, q.name, "in_flight"))
        == (
            str(q.qsize()),
            str(q.in_flight()),
        )
        == ("3", "1")
    )
    assert cell(browser, q.name, "dead") == str(len(q.dead_letters())) == "2"
    assert browser.find_element(By.ID, "throughput").is_displayed()

    q.put_many(["more", "items"])  # the page follows without a reload
    WebDriverWait(browser, GUARD).until(lambda _: cell(browser, q.name, "waiting") == "5")
    WebDriverWait(browser, GUARD).until(
        lambda _: cell(browser, q.name, "put_rate") not in ("-", "")
    )
    if os.environ.get("DISTQUEUE_SCREENSHOT"):
        browser.save_screenshot(os.environ["DISTQUEUE_SCREENSHOT"])

    browser.find_element(By.LINK_TEXT, q.name).click()
    WebDriverWait(browser, GUARD).until(
        expected_conditions.presence_of_element_located((By.ID, "figures"))
    )
    waiting_rows = browser.find_elements(By.CSS_SELECTOR, "#waiting tbody tr")
    assert len(waiting_rows) == 5
    assert "'resize'" in waiting_rows[0].text
    [lease] = browser.find_elements(By.CSS_SELECTOR, "#leases tbody tr")
    assert "in " in lease.text  # its deadline
    dead_rows = browser.find_elements(By.CSS_SELECTOR, "#dead tbody tr")
    assert len(dead_rows) == 2
    assert "<script>alert(1)</script>" in dead_rows[0].text  # shown as text, never run
    first_id = dead_rows[0].get_attribute("data-id")

    browser.find_element(By.NAME, "search").send_keys("items\n")
    WebDriverWait(browser, GUARD).until(
        lambda _: len(browser.find_elements(By.CSS_SELECTOR, "#waiting tbody tr")) == 1
    )

    browser.find_element(By.CSS_SELECTOR, f'#dead tr[data-id="{first_id}"] button.requeue').click()
    WebDriverWait(browser, GUARD).until(expected_conditions.alert_is_present())
    browser.switch_to.alert.accept()
    notice = WebDriverWait(browser, GUARD).until(
        expected_conditions.presence_of_element_located((By.ID, "notice"))
    )
    assert notice.text == "requeued 1 dead letter(s)"
    assert [letter.id for letter in q.dead_letters()] != [first_id]
    assert len(q.dead_letters()) == 1 and q.qsize() == 6

    browser.find_element(By.ID, "purge-all").click()  # confirmation refused: nothing happens
    WebDriverWait(browser, GUARD).until(expected_conditions.alert_is_present())
    browser.switch_to.alert.dismiss()
    assert len(q.dead_letters()) == 1

    browser.get(base + "/workers")
    assert browser.find_element(By.ID, "workers")


def test_read_only_dashboard_shows_no_buttons_and_refuses_actions(
    browser: Any, dashboard: Callable[..., str], busy_queue: Any
) -> None:
    from selenium.webdriver.common.by import By

    q, _ = busy_queue
    base = dashboard()
    browser.get(f"{base}/queue/{q.name}")
    assert browser.find_element(By.ID, "mode").text == "read-only"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#dead tbody tr")) == 2
    assert browser.find_elements(By.CSS_SELECTOR, "form[method=post]") == []
    status = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(arguments[0], {method: "POST", body: "token=x",
              headers: {"Content-Type": "application/x-www-form-urlencoded"}})
          .then(r => done(r.status));""",
        f"{base}/queue/{q.name}/dead/purge",
    )
    assert status == 403
    assert len(q.dead_letters()) == 2


# -- the HTTP surface, through Starlette's test client -------------------------------------


@pytest.fixture
def client_for(redis_url: str) -> Callable[..., Any]:
    from starlette.testclient import TestClient

    from distqueue.dashboard import create_app

    def make(url: str = redis_url, **options: Any) -> Any:
        return TestClient(create_app(url, **options))

    return make


def test_the_servers_password_is_never_shown(
    client_for: Callable[..., Any], redis_url: str, busy_queue: Any
) -> None:
    q, _ = busy_queue
    secret_url = redis_url.replace("redis://", "redis://:hunter2-secret@")
    with redis.Redis.from_url(redis_url) as raw:
        raw.config_set("requirepass", "hunter2-secret")
    try:
        client = client_for(secret_url)
        for path in ("/", "/workers", f"/queue/{q.name}", "/api/queues", "/api/workers"):
            reply = client.get(path)
            assert reply.status_code == 200, (path, reply.text)
            assert "hunter2" not in reply.text, path
        assert ":***@127.0.0.1" in client.get("/").text
    finally:
        with redis.Redis.from_url(secret_url) as raw:
            raw.config_set("requirepass", "")


def test_actions_are_refused_when_off_and_need_the_forms_token(
    client_for: Callable[..., Any], busy_queue: Any
) -> None:
    q, _ = busy_queue
    off = client_for()
    reply = off.post(f"/queue/{q.name}/dead/purge", data={"token": "anything"})
    assert reply.status_code == 403 and "--allow-actions" in reply.text
    on = client_for(allow_actions=True)
    reply = on.post(f"/queue/{q.name}/dead/purge", data={"token": "forged"})
    assert reply.status_code == 403
    assert len(q.dead_letters()) == 2
    token = on.app.state.dashboard.token
    reply = on.post(f"/queue/{q.name}/dead/purge", data={"token": token}, follow_redirects=False)
    assert reply.status_code == 303 and len(q.dead_letters()) == 0
    assert on.post(f"/queue/{q.name}/dead/explode", data={"token": token}).status_code == 404


def test_the_dashboard_mounts_inside_another_asgi_app(redis_url: str, busy_queue: Any) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    from distqueue.dashboard import create_app

    q, _ = busy_queue
    outer = Starlette(routes=[Mount("/ops/queues", app=create_app(redis_url))])
    client = TestClient(outer)
    page = client.get("/ops/queues/")
    assert page.status_code == 200
    assert f'href="/ops/queues/queue/{q.name}"' in page.text
    assert client.get("/ops/queues/static/app.js").status_code == 200
    assert client.get(f"/ops/queues/queue/{q.name}").status_code == 200


def test_garbage_in_the_registry_is_shown_as_unreadable(
    client_for: Callable[..., Any], redis_url: str
) -> None:
    name = fresh_name("<b>garbage</b>")
    with redis.Redis.from_url(redis_url) as raw:
        raw.hset(QUEUES_KEY, name, b"\xff\x00 not json")
    try:
        client = client_for()
        summary = client.get("/")
        assert summary.status_code == 200
        assert "<b>garbage</b>" not in summary.text and "&lt;b&gt;garbage" in summary.text
        page = client.get("/queue/" + urllib.parse.quote(name, safe=""))
        assert page.status_code == 200 and "unreadable" in page.text
        assert client.get("/api/queues").status_code == 200
    finally:
        with redis.Redis.from_url(redis_url) as raw:
            raw.hdel(QUEUES_KEY, name)


def test_a_server_that_is_down_is_an_error_page_not_a_crash(
    client_for: Callable[..., Any],
) -> None:
    client = client_for(f"redis://127.0.0.1:{free_port()}/0")
    reply = client.get("/")
    assert reply.status_code == 502 and "unreachable" in reply.text
    assert client.get("/api/queues").status_code == 502


def test_the_dashboard_binds_to_localhost_by_default() -> None:
    from distqueue.cli import build_parser

    args = build_parser().parse_args(["dashboard", "--url", "redis://x:6379/0"])
    assert (args.host, args.allow_actions) == ("127.0.0.1", False)
    args = build_parser().parse_args(["exporter", "--url", "redis://x:6379/0"])
    assert args.host == "127.0.0.1"


def test_a_registry_key_of_the_wrong_type_is_an_error_page(
    client_for: Callable[..., Any], redis_url: str
) -> None:
    backup = fresh_name("registry-backup")
    with redis.Redis.from_url(redis_url) as raw:
        had = raw.exists(QUEUES_KEY)
        if had:
            raw.rename(QUEUES_KEY, backup)
        raw.set(QUEUES_KEY, "garbage")
        try:
            client = client_for()
            reply = client.get("/")
            assert reply.status_code == 502 and "WRONGTYPE" in reply.text
            assert client.get("/api/queues").status_code == 502
        finally:
            raw.delete(QUEUES_KEY)
            if had:
                raw.rename(backup, QUEUES_KEY)


def test_the_summary_pages_and_filters_many_queues(
    client_for: Callable[..., Any], redis_url: str
) -> None:
    from distqueue.registry import open_registry

    prefix = fresh_name("many")
    names = [f"{prefix}-{i:02d}" for i in range(55)]
    registry = open_registry(redis_url)
    try:
        for name in names:
            registry.note(name, "fifo", {"maxsize": 0})
        client = client_for()
        first = client.get("/", params={"filter": prefix.upper()})
        assert first.status_code == 200
        assert first.text.count('<tr data-queue="') == 50
        assert ">55 of " in first.text and 'id="next"' in first.text
        rest = client.get("/", params={"filter": prefix, "offset": "50"})
        shown = re.findall(r'<tr data-queue="([^"]+)"', rest.text)
        assert shown == names[50:]
        assert 'id="next"' not in rest.text and 'id="prev"' in rest.text
    finally:
        for name in names:
            registry.forget(name)
        registry.close()


def test_pages_may_not_be_framed_by_another_site(client_for: Callable[..., Any]) -> None:
    reply = client_for(allow_actions=True).get("/")
    assert reply.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
