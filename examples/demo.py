"""`make demo`: the whole streamjobs story on the local broker, start to finish.

topics apply -> a worker -> a few hundred jobs (some fail transiently, some permanently) ->
retries and dead letters -> "fix the bug" -> `streamjobs dlq reprocess --execute` -> summary.
Every run uses its own topic prefix and deletes its topics at the end (unless --keep).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import click
from prometheus_client.parser import text_string_to_metric_families

from streamjobs import Catalogue, KafkaConfig, Producer, desired_topics

ROOT = Path(__file__).resolve().parent.parent


def _exe() -> str:
    return shutil.which("streamjobs", path=str(Path(sys.executable).parent)) or "streamjobs"


def _sj(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([_exe(), *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    if check and proc.returncode != 0:
        raise click.ClickException(f"streamjobs {' '.join(args)} failed "
                                   f"({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metrics(port: int) -> dict[str, float]:
    """Sums of the worker's job counters by outcome."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == "streamjobs_jobs_total":
                key = sample.labels.get("outcome", "")
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _published(proc: subprocess.CompletedProcess[str]) -> int:
    report = json.loads(proc.stdout)
    return sum(len(t["published"]) for t in report["topics"])


def _outcomes(state: Path) -> dict[str, set[str]]:
    """job ids by their latest outcome, from the handlers' log."""
    latest: dict[str, str] = {}
    path = state / "outcomes.log"
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                latest[parts[0]] = parts[3]
    by: dict[str, set[str]] = {}
    for job_id, outcome in latest.items():
        by.setdefault(outcome, set()).add(job_id)
    return by


def _wait(what: str, done: Callable[[], tuple[bool, str]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        ok, line = done()
        click.echo(f"\r  {what}: {line}   ", nl=False)
        if ok:
            click.echo()
            return
        if time.monotonic() > deadline:
            click.echo()
            raise click.ClickException(f"timed out waiting for {what}")
        time.sleep(0.5)


@click.command()
@click.option("--emails", default=200, show_default=True, envvar="DEMO_EMAILS")
@click.option("--thumbnails", default=100, show_default=True, envvar="DEMO_THUMBNAILS")
@click.option("--keep", is_flag=True, envvar="DEMO_KEEP", help="Keep the demo's topics.")
@click.option("--timeout", default=180.0, show_default=True, envvar="DEMO_TIMEOUT")
def main(emails: int, thumbnails: int, keep: bool, timeout: float) -> None:
    """Run the streamjobs demo against the local broker."""
    kafka = KafkaConfig.from_env()
    prefix = f"demo-{int(time.time())}-{random.randint(0, 9999):04d}."
    state = ROOT / ".streamjobs" / "demo" / prefix.rstrip(".")
    state.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {**os.environ, "STREAMJOBS_TOPIC_PREFIX": prefix, "DEMO_STATE_DIR": str(state),
           "STREAMJOBS_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "PYTHONUNBUFFERED": "1"}
    catalogue = Catalogue.load(ROOT / "schemas", topic_prefix=prefix)
    click.secho(f"streamjobs demo on {kafka.bootstrap_servers} (topics {prefix}*)", bold=True)

    click.echo("1. streamjobs topics apply")
    _sj("topics", "apply", env=env)

    click.echo(f"2. streamjobs worker examples.demo_app:app (metrics on :{port})")
    log = open(state / "worker.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [_exe(), "worker", "examples.demo_app:app", "--metrics-port", str(port),
         "--log-level", "warning", "--grace-period", "10", "--concurrency", "8"],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        total = emails + thumbnails
        rng = random.Random(42)
        with Producer(catalogue, kafka) as producer, click.progressbar(
                length=total, label="3. emitting jobs", file=sys.stderr) as bar:
            for i in range(emails):
                plus = rng.random() < 0.1
                producer.emit("send_welcome_email", {
                    "user_id": f"user-{i}", "locale": "en",
                    "email": f"user{i}+news@example.com" if plus else f"user{i}@example.com"})
                bar.update(1)
            for i in range(thumbnails):
                wide = rng.random() < 0.1
                producer.emit("make_thumbnail", {
                    "image_id": f"img-{i}", "url": f"https://img.example.com/{i}.png",
                    "width": 6000 if wide else 1200, "height": 800})
                bar.update(1)

        def first_pass() -> tuple[bool, str]:
            m = _metrics(port)
            by = _outcomes(state)
            ok, dead = len(by.get("ok", ())), int(m.get("dead_lettered", 0))
            return (ok + dead >= total,
                    f"{ok} succeeded, {int(m.get('retried', 0))} retried, {dead} dead-lettered"
                    f" of {total}")

        _wait("4. processing", first_pass, timeout)
        first = _metrics(port)
        dead = int(first.get("dead_lettered", 0))
        click.echo(_sj("dlq", "stats", "--all", env=env).stdout.rstrip())

        click.echo("5. deploying the fix for bug #42, then: streamjobs dlq reprocess --all "
                   "--execute")
        (state / "fixed").touch()
        dry = _published(_sj("dlq", "reprocess", "--all", "--json", env=env))
        click.echo(f"   dry run: {dry} dead letters would be re-published")
        done = _published(_sj("dlq", "reprocess", "--all", "--execute", "--json", env=env))
        again = _published(_sj("dlq", "reprocess", "--all", "--execute", "--json", env=env))
        click.echo(f"   executed: {done} re-published; a second run re-publishes {again} "
                   "(progress is kept in Kafka)")

        def second_pass() -> tuple[bool, str]:
            ok = len(_outcomes(state).get("ok", ()))
            return ok >= total, f"{ok} of {total} succeeded"

        _wait("6. reprocessing", second_pass, timeout)
        final = _metrics(port)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            code = -9
        log.close()
        if not keep:
            _delete_topics(kafka, catalogue)

    rows = [("emitted", total), ("processed (succeeded)", len(_outcomes(state).get("ok", ()))),
            ("retried", int(final.get("retried", 0))), ("dead-lettered", dead),
            ("reprocessed from the DLQ", int(final.get("succeeded", 0)) - int(
                first.get("succeeded", 0)))]
    click.secho("\nsummary", bold=True)
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        click.echo(f"  {name:<{width}}  {value:>6}")
    if code != 0:
        raise click.ClickException(f"the worker exited with {code}; see {state / 'worker.log'}")
    click.secho("demo finished: every job succeeded after the fix", fg="green")


def _delete_topics(kafka: KafkaConfig, catalogue: Catalogue) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka.client_settings())
    names = [t.name for t in desired_topics(catalogue)]
    for fut in admin.delete_topics(names, operation_timeout=30).values():
        with contextlib.suppress(Exception):  # a topic that is already gone is fine
            fut.result(timeout=30)


if __name__ == "__main__":
    main()
