"""The stall report of a stream worker says where each task of the event loop waits (no servers)."""

from __future__ import annotations

import asyncio

from tracestream.stream.stall import _task_stacks


async def _wait_for_the_broker(never: asyncio.Event) -> None:
    await never.wait()


async def _send_completed_trace(never: asyncio.Event) -> None:
    await _wait_for_the_broker(never)


def test_a_suspended_task_is_shown_with_its_whole_await_chain() -> None:
    async def scenario() -> list[str]:
        never = asyncio.Event()
        task = asyncio.create_task(_send_completed_trace(never), name="assemble-traces")
        await asyncio.sleep(0)
        try:
            return _task_stacks(asyncio.get_running_loop(), limit=8)
        finally:
            task.cancel()

    lines = asyncio.run(scenario())

    [agent] = [line for line in lines if line.strip().startswith("assemble-traces:")]
    functions = [part.split(" (")[0] for part in agent.split(": ", 1)[1].split(" -> ")]
    assert functions[:3] == ["_send_completed_trace", "_wait_for_the_broker", "wait"]
