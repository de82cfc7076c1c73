"""What a stream worker that has stopped making progress is waiting for, written to its log.

Why: a worker whose agents get nothing while records wait (a blocked await, a partition left
paused) otherwise logs nothing but an unchanging status line. The report shows what the event
loop's tasks and the consumer's thread are awaiting, and the consumer's view of its partitions.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
from typing import Any


def _where(code: Any, lineno: int | None) -> str:
    return f"{code.co_name} ({code.co_filename.rsplit('/', 2)[-1]}:{lineno})"


def _await_chain(awaitable: Any, limit: int) -> list[str]:
    """Where a suspended coroutine waits: its frame, then what it awaits, and so on.

    (``Task.get_stack`` gives only the outermost frame of a suspended coroutine.)
    """
    chain: list[str] = []
    while awaitable is not None and len(chain) < limit:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:
            chain.append(type(awaitable).__name__)
            break
        chain.append(_where(frame.f_code, frame.f_lineno))
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
    return chain


def _task_stacks(loop: asyncio.AbstractEventLoop | None, limit: int) -> list[str]:
    if loop is None or loop.is_closed():
        return []
    try:
        tasks = asyncio.all_tasks(loop)
    except RuntimeError:  # the set changed while it was copied (another thread's loop)
        return ["  (tasks not readable)"]
    lines = []
    for task in sorted(tasks, key=lambda t: t.get_name()):
        chain = _await_chain(task.get_coro(), limit)
        lines.append(f"  {task.get_name()}: {' -> '.join(chain) or 'not started'}")
    return lines


def _thread_stacks(limit: int) -> list[str]:
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    lines = []
    for ident, frame in sys._current_frames().items():
        stack = traceback.extract_stack(frame, limit=limit)
        where = " <- ".join(f"{s.name} ({s.filename.rsplit('/', 2)[-1]}:{s.lineno})" for s in reversed(stack))
        lines.append(f"  thread {names.get(ident, ident)}: {where}")
    return lines


def stall_report(app: Any, limit: int = 6) -> str:
    """The state of a Faust app's consumer, producer buffer and agents, and every task's stack."""
    consumer = app.consumer
    lines = ["stream stall report:"]
    try:
        assignment = sorted(consumer.assignment())
        lines.append(f"  assignment: {assignment}")
        lines.append(f"  highwaters: { {str(tp): consumer.highwater(tp) for tp in assignment} }")
    except Exception as exc:  # the consumer may be between generations
        lines.append(f"  assignment: unreadable ({exc!r})")
    for name in ("_active_partitions", "_paused_partitions", "_buffered_partitions", "_read_offset"):
        lines.append(f"  consumer.{name}: {getattr(consumer, name, None)}")
    lines.append(
        f"  flow active: {consumer.flow_active}; app flow control active: {app.flow_control.is_active()}"
    )
    lines.append(f"  unacked messages: {len(getattr(consumer, '_unacked_messages', ()))}")
    lines.append(f"  producer buffer size: {app.producer.buffer.size}")
    services = {
        "producer": app.producer,
        "producer buffer": app.producer.buffer,
        "consumer": consumer,
        "fetcher": getattr(app, "_fetcher", None),
        "conductor": app.topics,
        "tables": app.tables,
    }
    states = ", ".join(f"{name} {getattr(service, 'state', '?')}" for name, service in services.items())
    lines.append(f"  services: {states}")
    for agent in app.agents.values():
        channel = getattr(agent, "channel", None)
        queue = getattr(channel, "queue", None) if channel is not None else None
        if queue is not None:
            pending = getattr(queue, "_pending_pressure_drop_callbacks", ())
            lines.append(
                f"  agent {agent.name}: queue {queue.qsize()} of {queue.maxsize}, "
                f"{len(pending)} pressure-drop callbacks pending"
            )
    lines.append("  tasks of the event loop:")
    lines.extend(_task_stacks(app.loop, limit))
    thread = getattr(consumer, "_thread", None)
    if thread is not None:
        lines.append("  tasks of the consumer's thread:")
        lines.extend(_task_stacks(getattr(thread, "thread_loop", None), limit))
    lines.append("  threads:")
    lines.extend(_thread_stacks(limit))
    return "\n".join(lines)
