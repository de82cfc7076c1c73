"""MLflow's conventions for trace-level text fields, shared by the SDK and the stream:
request/response previews and the truncation of ``mlflow.traceInputs`` / ``mlflow.traceOutputs``."""

from __future__ import annotations

import json
from typing import Any

REQUEST_PREVIEW_LENGTH = 1000
TRACE_IO_METADATA_LENGTH = 250


def truncate_preview(text: str, limit: int) -> str:
    # MLflow's truncation: keep limit-3 characters and add "...".
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _message_text(message: Any) -> str | None:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                return part
            if isinstance(part, dict) and part.get("type") in ("text", "output_text", "input_text"):
                text = part.get("text")
                if isinstance(text, str):
                    return text
    return None


def _chat_messages(payload: Any) -> list[Any] | None:
    """The chat messages in MLflow's usual shapes: messages, choices[0].message, input, output,
    or any of those under "request"."""
    if not isinstance(payload, dict):
        return None
    messages = payload.get("messages")
    if isinstance(messages, list):
        return messages
    choices = payload.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict) and "message" in choices[0]:
        return [choices[0]["message"]]
    for key in ("input", "output"):
        if isinstance(payload.get(key), list):
            return payload[key]
    return _chat_messages(payload.get("request"))


def preview(serialized: str | None, role: str) -> str | None:
    """MLflow's request/response preview of the root span's JSON inputs or outputs: the last
    ``role`` (user/assistant) chat message when there is one, else the JSON, cut to 1000."""
    if serialized is None:
        return None
    text = None
    if serialized.startswith("{"):
        try:
            messages = _chat_messages(json.loads(serialized))
        except ValueError:
            messages = None
        if messages:
            chosen = next(
                (m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == role), messages[-1]
            )
            text = _message_text(chosen)
    return truncate_preview(text or serialized, REQUEST_PREVIEW_LENGTH)
