"""The homework, solved: a pipeline that counts words, across processes and machines.

    python examples/homework_wordcount.py                                 # threads, in memory
    python examples/homework_wordcount.py --url redis://HOST:6379/0       # processes, on Redis
    python examples/homework_wordcount.py --url redis://HOST:6379/0 --memcached HOST:11211
    python examples/homework_wordcount.py --worker --url redis://HOST:6379/0  # other machines

The pipeline, fetch -> parse -> count:

    producer --fetch queue--> fetch stage --parse queue--> count stage --> cache
             (document URLs)             ({"url", "text"})                 (counts per document)

- the producer (this script) puts the URL of each document on the *fetch* queue: by default
  ``file://`` URLs of ``examples/data/*.txt``, or the URLs or paths given (``http://`` too);
- a worker's fetch stage downloads each document and puts its text on the *parse* queue;
- its count stage splits the text into words and stores each document's word counts in the
  cache (``Cache`` on Redis or memcached), under ``counts:NAME``;
- the producer waits with ``join()`` until every document went through both stages, reads the
  counts back from the cache, adds them up, prints the most common words and stores the total
  under ``total``.

Each worker is a process with one thread per stage (threads of this process when there is no
``--url``). With ``--url``, more workers can join from any machine that reaches the server:
run ``... --worker --url URL --name NAME`` there while the run goes on (or before the first run
of a name). A worker serves one run: it stops when the run is over, and the run's queues stay
on the server, shut down, until the next run of that name starts. A worker reads ``file://``
URLs on its own machine: workers elsewhere need the files at the same path, or ``http://`` URLs.

A word is a run of the letters a-z, with inner apostrophes ("don't"), in lower case.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import re
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import distqueue

DATA = Path(__file__).resolve().parent / "data"
WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
TOP = 10


def words_of(text: str) -> list[str]:
    return WORD.findall(text.lower())


def document_name(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or url


def fetch_stage(fetch: distqueue.Queue[str], parse: distqueue.Queue[Any]) -> None:
    while True:
        try:
            url = fetch.get()
        except distqueue.ShutDown:
            return
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                text = reply.read().decode("utf-8", errors="replace")
        except OSError as exc:  # unreachable, missing: the count stage records why
            parse.put({"url": url, "error": str(exc)})
        else:
            parse.put({"url": url, "text": text})
        fetch.task_done()  # after the put: join() on the fetch queue then covers the handover


def count_stage(parse: distqueue.Queue[Any], cache: distqueue.Cache) -> None:
    while True:
        try:
            document = parse.get()
        except distqueue.ShutDown:
            return
        if "text" in document:
            result = {"counts": dict(collections.Counter(words_of(document["text"])))}
        else:
            result = {"error": document["error"]}
        if not cache.set(f"counts:{document_name(document['url'])}", result):
            print(f"could not store the counts of {document['url']}", file=sys.stderr)
        parse.task_done()


def run_worker(
    fetch: distqueue.Queue[str], parse: distqueue.Queue[Any], cache: distqueue.Cache
) -> None:
    """One worker: a thread for each stage, until the queues are shut down."""
    stages = [
        threading.Thread(target=fetch_stage, args=(fetch, parse)),
        threading.Thread(target=count_stage, args=(parse, cache)),
    ]
    for stage in stages:
        stage.start()
    for stage in stages:
        stage.join()


Pipeline = tuple[distqueue.Queue[str], distqueue.Queue[Any], distqueue.Cache]


def open_pipeline(args: argparse.Namespace) -> Pipeline:
    fetch: distqueue.Queue[str] = distqueue.Queue(url=args.url, name=f"{args.name}-fetch")
    parse: distqueue.Queue[Any] = distqueue.Queue(url=args.url, name=f"{args.name}-parse")
    cache_url = f"memcached://{args.memcached}" if args.memcached else args.url or "memory://"
    cache = distqueue.Cache(cache_url, namespace=args.name, default_ttl=3600)
    return fetch, parse, cache


def document_urls(given: list[str]) -> list[str]:
    if not given:
        return [path.as_uri() for path in sorted(DATA.glob("*.txt"))]
    return [arg if "://" in arg else Path(arg).resolve().as_uri() for arg in given]


def produce(args: argparse.Namespace) -> None:
    fetch, parse, cache = open_pipeline(args)
    shared = fetch.url != "memory://"
    if shared:  # start clean: nothing left of an earlier run that stopped half-way
        fetch.delete()
        parse.delete()
    urls = document_urls(args.documents)
    kind = "processes" if shared else "threads"
    print(f"queues on {fetch.url}, results in {cache.url}; {args.workers} workers ({kind})")
    if shared:
        print(f"  more workers: python {sys.argv[0]} --worker --url {args.url} --name {args.name}")

    start: Any = multiprocessing.get_context("spawn").Process if shared else threading.Thread
    workers = [start(target=run_worker, args=(fetch, parse, cache)) for _ in range(args.workers)]
    for worker in workers:
        worker.start()
    for url in urls:
        fetch.put(url)
    fetch.join()  # every document fetched and handed to the count stage
    parse.join()  # every document counted and stored
    fetch.shutdown()  # the workers' get() raise ShutDown: they stop
    parse.shutdown()
    for worker in workers:
        worker.join()
    # The queues stay on the server, shut down, so that a worker elsewhere that has not yet
    # seen the end sees it too; the next run with this name deletes them as it starts.

    names = [document_name(url) for url in urls]
    found = cache.get_many([f"counts:{name}" for name in names])
    total: collections.Counter[str] = collections.Counter()
    counted = 0
    for name in names:
        result = found.get(f"counts:{name}")
        if result is None or "error" in result:
            why = "missing from the cache" if result is None else result["error"]
            print(f"  {name}: FAILED ({why})")
            continue
        counts = collections.Counter(result["counts"])
        print(f"  {name}: {counts.total()} words, {len(counts)} distinct")
        total.update(counts)
        counted += 1
    which = f"all {counted}" if counted == len(names) else f"{counted} of {len(names)}"
    print(f"{which} documents: {total.total()} words, {len(total)} distinct")
    top = sorted(total.items(), key=lambda pair: (-pair[1], pair[0]))[:TOP]
    print(f"the {TOP} most common: " + ", ".join(f"{word} {count}" for word, count in top))
    cache.set("total", {"words": total.total(), "distinct": len(total), "top": top})
    print(f"stored in the cache (namespace {args.name!r}): counts:NAME for each document, total")
    for q in (fetch, parse):
        q.close()
    cache.close()
    if counted < len(names):
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("documents", nargs="*", help="URLs or paths (default: examples/data)")
    parser.add_argument("--url", help="queues (and results) on redis://HOST:6379/0")
    parser.add_argument("--memcached", metavar="HOST:PORT", help="results on memcached")
    parser.add_argument("--name", default="wordcount", help="the run's queues and namespace")
    parser.add_argument("--workers", type=int, default=2, help="workers started here")
    parser.add_argument("--worker", action="store_true", help="be one more worker of a run")
    args = parser.parse_args()
    if args.worker:
        if not args.url:
            parser.error("a worker elsewhere needs the queues' --url")
        fetch, parse, cache = open_pipeline(args)
        if fetch.is_shutdown:
            raise SystemExit(f"the run {args.name!r} is over: start workers once a run began")
        run_worker(fetch, parse, cache)
    else:
        produce(args)


if __name__ == "__main__":
    main()
