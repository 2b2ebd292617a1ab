# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark-only callback: when each task starts and when its results come back, written as JSON.

Not part of the collection (bench/ is not packaged). bench/run_bench.py --profile enables it with
ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins ANSIBLE_CALLBACKS_ENABLED=bench_task_timer and reads
BENCH_TIMER_OUT. It is used because no profile_tasks callback (ansible.posix / community.general) is
installed in the venv.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: bench_task_timer
type: aggregate
short_description: task timings for bench/run_bench.py
description: Records task start and result times into the file named by BENCH_TIMER_OUT.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_task_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded = time.time()
        self._events: dict[str, Any] = {"callback_loaded": self._loaded, "tasks": []}

    def _now(self, key: str) -> None:
        self._events.setdefault(key, time.time())

    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._now("playbook_start")

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._now("play_start")

    def _task(self, task: Any, kind: str) -> None:
        role = getattr(task, "_role", None)
        self._events["tasks"].append({
            "name": task.get_name(), "action": task.action, "role": role.get_name() if role else None,
            "kind": kind, "start": time.time(), "results": [],
        })

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._task(task, "task")

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self._task(task, "handler")

    def _result(self, status: str) -> None:
        if self._events["tasks"]:
            self._events["tasks"][-1]["results"].append({"status": status, "at": time.time()})

    def v2_runner_on_ok(self, result: Any) -> None:
        self._result("ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._result("failed")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._result("skipped")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._result("unreachable")

    def v2_playbook_on_include(self, included_file: Any) -> None:
        self._result("included")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._now("stats")
        out = os.environ.get("BENCH_TIMER_OUT")
        if out:
            with open(out, "w", encoding="utf-8") as handle:
                json.dump(self._events, handle)
