"""Write docs/reliability.md from the figures the last runs left in build/ (no Django).

    .venv/bin/python -m tests.soak.report

`make soak` writes build/soak/results.json (load and faults), build/reliability/burst.json
(the embedded default's burst, five rounds) and build/reliability/slot-stateful.json (the
Hypothesis state machine, 150 examples); `make test` writes the pool-kill figures of the
embedded default (build/reliability/pool-kill-*.json) and what a viewer was refused
(build/reliability/viewer-refused.json). What a file lacks is said, not made up.
"""

import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
DOC = ROOT / "docs" / "reliability.md"

FAULTS = {
    "worker_main_killed_mid_build": "SIGKILL of a worker's main process mid-build",
    "worker_main_killed_mid_rollout": "SIGKILL of a worker's main process mid-rollout",
    "pool_killed_mid_build": "SIGKILL of a worker's pool processes mid-build",
    "pool_killed_mid_rollout": "SIGKILL of a worker's pool processes mid-rollout",
    "pool_killed_while_idle": "SIGKILL of a worker's pool processes while idle",
    "redis_restarted": "Redis restarted mid-deploy",
    "postgres_connections_dropped": "PostgreSQL connections dropped mid-step",
    "jenkins_500": "Jenkins answering 500",
    "jenkins_timeout": "Jenkins timing out",
    "aws_throttling": "the simulated AWS throttling (ThrottlingException)",
    "aws_disappeared": "the simulated AWS gone, then back",
}


def load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main() -> None:
    soak = load(BUILD / "soak" / "results.json") or {}
    burst = load(BUILD / "reliability" / "burst.json")
    slot = load(BUILD / "reliability" / "slot-stateful.json")
    viewer = load(BUILD / "reliability" / "viewer-refused.json")
    kills = {
        name: load(BUILD / "reliability" / f"pool-kill-{name}.json")
        for name in ("idle", "mid-build", "mid-rollout")
    }
    lines = [
        "# Reliability: what was tried, and what it cost",
        "",
        "Every deploy reaches a final state or says why it waits, whatever dies underneath it.",
        "These are the tests that try to break that promise, with their figures from the last",
        f"run (this page was written by `python -m tests.soak.report` on "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, on a 2-core machine). `make test` runs",
        "the fast ones; `make soak` the long ones (about 15 minutes here); `.ci/run` a short soak.",
        "",
        "Stranded means a deploy left neither final nor waiting with a reason; lost means a",
        "deploy queued that the system no longer knows of. Both must be 0, and were.",
        "",
    ]
    lines += section_burst(burst)
    lines += section_pool_kills(kills)
    lines += section_load(soak.get("load", {}).get("queued_at_once"))
    lines += section_faults(soak.get("faults", {}))
    lines += section_slot(slot)
    lines += section_inputs()
    lines += section_viewer(viewer)
    DOC.write_text("\n".join(lines).rstrip() + "\n")
    print(f"written {DOC.relative_to(ROOT)}")


def section_burst(burst) -> list[str]:
    out = [
        "## The embedded broker under a burst (tests/test_embedded_reliability.py)",
        "",
        "The reproduction of the crash: merge-only deploys queued at once through the API by",
        "several clients while another polls every application's queue twice a second, on",
        "`make run` (gunicorn with threads, SQLite, the folder broker, one worker with two pool",
        "processes). On kombu's filesystem transport the worker died after 38 merges",
        '("Unrecoverable error: JSONDecodeError"); `make bench` still shows that transport',
        "crashing a worker on small messages now and then.",
        "",
    ]
    if not burst:
        return [*out, "No figures: run `make soak`.", ""]
    out += [
        f"- Server: {burst['server']}; {burst['clients']} clients queueing, the queues polled "
        f"every {burst['poll_interval_s']} s.",
        f"- Deploys queued: {burst['deploys_queued']} in {len(burst['rounds'])} round(s); "
        f"stranded {burst['stranded']}, lost {burst['lost']}; every one merged, the worker "
        "never died.",
        "",
        "| round | deploys | queue to all merged (s) | queue answers while polled |",
        "| --- | --- | --- | --- |",
    ]
    for n, r in enumerate(burst["rounds"], start=1):
        out.append(f"| {n} | {r['deploys']} | {r['seconds']} | {r['polls']} |")
    return [*out, ""]


def section_pool_kills(kills) -> list[str]:
    out = [
        "## A worker whose pool processes were killed (embedded default)",
        "",
        "SIGKILL of every pool process of the worker, as the kernel's OOM killer kills a busy",
        "child. Cause of the old hang: kombu's filesystem transport is synchronous, so Celery",
        "ran its prefork pool in threaded mode, where the children share one inbound queue",
        "under one lock and an idle child waits for work holding it; a child killed there",
        "leaves the lock held for ever, and every new child blocks on it (seen with py-spy:",
        "`SemLock.__enter__` in `SimpleQueue.get_payload`). The folder transport is",
        "asynchronous for Celery, so the worker runs the event-loop pool (one pipe per child,",
        "no shared lock), as on Redis.",
        "",
        "| when | pool processes killed | figure |",
        "| --- | --- | --- |",
    ]
    labels = {
        "idle": ("while idle", "queued_to_merged_s", "a deploy queued after: queued to merged"),
        "mid-build": ("mid-build", "kill_to_merged_s", "kill to merged"),
        "mid-rollout": ("mid-rollout", "kill_to_succeeded_s", "kill to succeeded"),
    }
    for name, figures in kills.items():
        when, key, what = labels[name]
        if figures:
            out.append(f"| {when} | {figures['killed']} | {what}: {figures[key]} s |")
        else:
            out.append(f"| {when} | - | no figures: run `make test` |")
    out += [
        "",
        "Each time the same worker went on consuming; the killed step was put back at once",
        "(`task_reject_on_worker_lost`), its lease taken over from the dead process, a build",
        'started again ("its worker died mid-build; starting it again") and each ECS service',
        "given exactly one new revision.",
        "",
    ]
    return out


def section_load(load_figures) -> list[str]:
    out = [
        "## Load: hundreds of deploys at once (tests/soak/test_load.py)",
        "",
        "Through the API, at once, on Redis and PostgreSQL, three worker processes (prefork, 2",
        "each), each with its own work folder as if on its own machine; builds on the stand-in",
        "Jenkins and locally, rollouts on the simulated ECS; the safety net and the build",
        "poller every second, as beat runs them.",
        "",
    ]
    if not load_figures:
        return [*out, "No figures: run `make soak`.", ""]
    f = load_figures
    outcomes = ", ".join(f"{n} {state}" for state, n in sorted(f["outcomes"].items()))
    out += [
        f"- Deploys queued: {f['deploys_queued']} across {f['applications']} applications "
        f"({f['local_builds']} local builds, {f['jenkins_builds']} on Jenkins, "
        f"{f['ecs_rollouts']} ECS rollouts), queued in {f['queued_in_seconds']} s.",
        f"- Outcomes: {outcomes}: each as its branch says. Stranded {f['stranded']}, "
        f"lost {f['lost']}.",
        f"- Candidates built on a machine that did not make them (fetched from "
        f"`refs/fatcontroller/candidates/<id>`): {f['built_on_another_machine']}.",
        f"- Wall time {f['wall_seconds']} s against a serial sum of {f['serial_sum_seconds']} s "
        f"(x{f['speedup_serial_over_wall']}; the sum counts time a deploy holds its slot "
        "waiting for a free worker).",
        f"- Safety net: {f['safety_net_rounds']} rounds, {f['safety_net_resends']} resends, "
        f"{f['safety_net_errors']} errors. Invariants after every round: one slot holder per "
        "application, the slot in queue order, nothing merged that did not pass its build, "
        "each default branch exactly its merged candidates.",
        "",
    ]
    return out


def section_faults(faults) -> list[str]:
    out = [
        "## Faults (tests/soak/test_faults.py)",
        "",
        "On Redis and PostgreSQL with real worker processes. Recovery: from the fault (or the",
        "end of an outage) to the first timeline event that is not a trouble report.",
        "",
        "| fault | deploys | outcomes | stranded | recovery (s) | fault to all final (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, label in FAULTS.items():
        f = faults.get(key)
        if not f:
            out.append(f"| {label} | - | not run | - | - | - |")
            continue
        outcomes = ", ".join(f"{n} {state}" for state, n in sorted(f["outcomes"].items()))
        out.append(
            f"| {label} | {f['deploys']} | {outcomes} | {f['stranded']} | "
            f"{f.get('recovery_seconds', '-')} | {f.get('fault_to_all_final_seconds', '-')} |"
        )
    out += [
        "",
        "A Redis restart under a task in flight can make a Celery worker exit (kombu raises",
        '"Unrecoverable error: AttributeError" from its ack path): the test restarts exited',
        "workers as a supervisor would, and `docker-compose.yml` restarts them. A test that",
        "workers survive it by themselves is marked as an expected failure.",
        "",
    ]
    return out


def section_slot(slot) -> list[str]:
    out = [
        "## The slot and the state machine (tests/deploys/test_slot_stateful.py)",
        "",
        "A Hypothesis state machine: random interleavings of queue, cancel, abandon, retry,",
        "build results, rollout results, lock and unlock, hold windows, lost messages, dead",
        "workers and safety-net runs. After every step: at most one holder per application,",
        "FIFO, every deploy final or waiting with a reason, nothing merged that did not pass",
        "its build (and in deploy mode its rollout and soak), nothing moving after a final",
        "state; at the end everything drains to a final state.",
        "",
    ]
    if not slot:
        return [*out, "No figures: run `make soak`.", ""]
    ended = {k.removeprefix("ended "): v for k, v in slot.items() if k.startswith("ended ")}
    out += [
        f"- Examples: {slot.get('examples', '-')}; steps: {slot.get('steps', '-')}; deploys "
        f"made: {slot.get('deploys', '-')}; messages lost to dying workers: "
        f"{slot.get('messages lost', '-')}.",
        "- Ended: " + ", ".join(f"{n} {state}" for state, n in sorted(ended.items())) + ".",
        "",
    ]
    return out


def section_inputs() -> list[str]:
    return [
        "## Bad input (tests/test_bad_input.py, tests/test_api_fuzz.py)",
        "",
        "97 targeted cases: lone surrogates and NUL in every text field of the API, the pages'",
        "forms, the history filters and the build hook; JSON nested 5,000 deep; ids of 0, 2^63,",
        "2^64 and 5,000 digits in every URL, pages included. Then Hypothesis: generated JSON",
        "bodies (surrogates, NUL, huge numbers, NaN, nesting up to 6,000 deep, raw bytes, form",
        "data) and path ids at every API endpoint listed from the URLconf, GET and POST: 26",
        "endpoints x 15 examples = 390 requests per run. No 5xx, and nothing changed by a",
        "refused request.",
        "",
    ]


def section_viewer(viewer) -> list[str]:
    out = [
        "## A viewer tries everything (tests/deploys/test_viewer_refused.py)",
        "",
        "A person with the viewer role sends every deployer and maintainer action the URL map",
        "has (queue, cancel, abandon, retry, restore, lock, unlock, a migration move): each",
        "page's form POST, and each API call with a session and with the viewer's own token.",
        "Every row of every table is compared before and after each request (but sessions and",
        "a token's last use). The same requests from a maintainer act, so they are real ones.",
        "",
    ]
    if not viewer:
        return [*out, "No figures: run `make test`.", ""]
    tried, refused = viewer["tried"], viewer["refused"]
    out += [
        f"- Tried: {sum(tried.values())} ("
        + ", ".join(f"{n} through {surface}" for surface, n in sorted(tried.items()))
        + f"); refused with 403: {sum(refused.values())}; requests that changed a row: "
        f"{viewer['changed']}.",
        "",
    ]
    return out


if __name__ == "__main__":
    main()
