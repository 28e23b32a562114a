"""Take the dashboard screenshot in docs/: a few busy queues on a redis-server, workers, the
dashboard, and headless Chromium (Debian's chromium and chromium-driver).

    python tests/with_redis.py .venv/bin/python docs/screenshot.py {url} docs
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import distqueue
from distqueue.worker import Worker


def busy(url: str, stop: threading.Event) -> list[Any]:
    emails: distqueue.Queue[Any] = distqueue.Queue(
        5000, url=url, name="emails", visibility_timeout=30, max_deliveries=3
    )
    thumbnails: distqueue.PriorityQueue[Any] = distqueue.PriorityQueue(
        url=url, name="thumbnails", visibility_timeout=60
    )
    reports: distqueue.LifoQueue[Any] = distqueue.LifoQueue(url=url, name="reports")
    reports.put_many([{"report": f"2026-11-{day:02d}"} for day in range(1, 31)])
    thumbnails.put_many([(random.randint(0, 9), f"img-{i}.jpg") for i in range(400)])
    for i in range(7):
        emails.put({"to": f"user{i}@example.com"})
        emails.get_message().reject(f"SMTPRecipientsRefused: user{i}@example.com")

    def produce() -> None:
        n = 0
        while not stop.is_set():
            emails.put_many(
                [{"to": f"user{n + i}@example.com"} for i in range(random.randint(5, 25))]
            )
            n += 25
            thumbnails.put((random.randint(0, 9), f"img-{n}.jpg"))
            stop.wait(0.1)

    def send(item: Any) -> None:
        time.sleep(random.uniform(0.001, 0.01))

    def resize(item: Any) -> None:
        time.sleep(0.4)

    workers = [
        Worker(emails, send, concurrency=4, heartbeat=1.0, poll=0.2),
        Worker(thumbnails, resize, concurrency=2, heartbeat=1.0, poll=0.2),
    ]
    threads = [threading.Thread(target=produce, daemon=True)]
    threads += [
        threading.Thread(target=w.run, kwargs={"handle_signals": False}, daemon=True)
        for w in workers
    ]
    for thread in threads:
        thread.start()
    return workers


def main(url: str, out: Path) -> int:
    from selenium import webdriver

    stop = threading.Event()
    workers = busy(url, stop)
    port = 8765
    dashboard = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distqueue",
            "dashboard",
            "--url",
            url,
            "--port",
            str(port),
            "--allow-actions",
            "--refresh",
            "1",
        ]
    )
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1360,820"):
        options.add_argument(argument)
    browser = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        browser.get(base + "/")
        time.sleep(20)  # let the chart fill
        browser.save_screenshot(str(out / "dashboard.png"))
    finally:
        browser.quit()
        stop.set()
        for worker in workers:
            worker.stop()
        dashboard.terminate()
        dashboard.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
