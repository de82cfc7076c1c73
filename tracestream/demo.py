"""The demo workload of the main job: one process of a simulated fleet of customer-support agents,
instrumented with the SDK exactly as an application would be.

Each request is a trace: an AGENT root, a RETRIEVER span, one or two CHAT_MODEL calls reporting
token usage, and TOOL calls; about 10% fail (a rate-limited model or a failing tool), each trace
carries user and session metadata and deployment tags, and about a fifth get user feedback.
The sleeps stand for model and tool latency so that durations look real; they do not make the
process busy.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from dataclasses import dataclass

from tracestream import producers as mlflow

QUESTIONS = (
    "Where is my order {order}? It was due yesterday.",
    "I want a refund for order {order}, the package arrived damaged.",
    "How do I change the shipping address of order {order}?",
    "My card was charged twice for order {order}.",
    "Can I upgrade my subscription and keep my discount?",
    "The tracking number for {order} does not work.",
    "Please cancel order {order} before it ships.",
    "¿Puedo devolver el pedido {order} sin la caja original?",
)
DOCUMENTS = (
    "Refunds are issued to the original payment method within 5 business days.",
    "Orders can be cancelled free of charge until they leave the warehouse.",
    "Damaged packages are replaced at no cost; a photo of the damage is required.",
    "Address changes are possible until the label is printed.",
    "Duplicate charges are reversed automatically within 48 hours.",
    "Subscription upgrades keep existing discounts for the current billing period.",
)
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet")
TOOLS = ("lookup_order", "issue_refund", "update_address", "create_ticket")


class RateLimitError(RuntimeError):
    """The model provider refused the call."""


class ToolError(RuntimeError):
    """A backend the agent calls failed."""


@dataclass(frozen=True)
class AgentConfig:
    agent: int
    traces_per_s: float
    seed: int
    error_rate: float = 0.1
    feedback_rate: float = 0.2


class SupportAgent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.version = f"1.{config.agent % 4}.0"
        self.last_trace_id: str | None = None
        self.failure: str | None = None

    def _pause(self, low_ms: int, high_ms: int) -> None:
        time.sleep(self.rng.uniform(low_ms, high_ms) / 1000)

    @mlflow.trace(span_type=mlflow.SpanType.RETRIEVER)
    def retrieve(self, query: str) -> list[dict[str, str]]:
        self._pause(5, 30)
        return [
            {"page_content": doc, "source": f"kb/{n}"} for n, doc in enumerate(self.rng.sample(DOCUMENTS, 3))
        ]

    def chat(self, messages: list[dict[str, str]], fail: bool) -> str:
        model = self.rng.choice(MODELS)
        with mlflow.start_span("chat", span_type=mlflow.SpanType.CHAT_MODEL) as span:
            span.set_inputs({"model": model, "messages": messages})
            self._pause(20, 120)
            if fail:
                raise RateLimitError(f"{model}: rate limited by provider (429)")
            prompt_tokens = sum(len(m["content"]) for m in messages) // 4 + self.rng.randint(50, 400)
            completion_tokens = self.rng.randint(20, 300)
            answer = "I have checked your order and " + self.rng.choice(DOCUMENTS).lower()
            span.set_attribute("mlflow.llm.model", model)
            span.set_attribute(
                "mlflow.chat.tokenUsage",
                {
                    "input_tokens": prompt_tokens,
                    "output_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            )
            span.set_outputs({"choices": [{"message": {"role": "assistant", "content": answer}}]})
            return answer

    def call_tool(self, name: str, order: str, fail: bool) -> dict[str, str]:
        with mlflow.start_span(name, span_type=mlflow.SpanType.TOOL) as span:
            span.set_inputs({"order_id": order})
            self._pause(5, 60)
            if fail:
                raise ToolError(f"{name}: backend timed out for order {order}")
            result = {"order_id": order, "status": self.rng.choice(("shipped", "processing", "delivered"))}
            span.set_outputs(result)
            return result

    @mlflow.trace(name="support_agent", span_type=mlflow.SpanType.AGENT)
    def handle(self, question: str, order: str, user: str, session: str) -> str:
        # What fails in this request is the simulation's choice, kept out of the traced inputs.
        failure = self.failure
        self.last_trace_id = mlflow.get_active_trace_id()
        mlflow.update_current_trace(
            user=user,
            session_id=session,
            tags={"env": "demo", "service": "support-bot", "version": self.version},
        )
        context = self.retrieve(question)
        messages = [
            {"role": "system", "content": "You are a support agent. Context: " + context[0]["page_content"]},
            {"role": "user", "content": question},
        ]
        plan = self.chat(messages, fail=failure == "model")
        for tool in self.rng.sample(TOOLS, self.rng.randint(1, 2)):
            self.call_tool(tool, order, fail=failure == "tool")
        if self.rng.random() < 0.5:
            messages.append({"role": "assistant", "content": plan})
            return self.chat(messages, fail=False)
        return plan

    def one_request(self) -> None:
        rng = self.rng
        order = f"A{rng.randint(10000, 99999)}"
        question = rng.choice(QUESTIONS).format(order=order)
        user = f"user-{rng.randint(1, 200)}"
        session = f"session-{self.config.agent}-{rng.randint(1, 50)}"
        failure = None
        if rng.random() < self.config.error_rate:
            failure = rng.choice(("model", "tool"))
        # The trace records the failure; a real service would answer with an apology.
        with contextlib.suppress(RateLimitError, ToolError):
            self.failure = failure
            self.handle(question, order, user, session)
        trace_id, self.last_trace_id = self.last_trace_id, None
        if trace_id and rng.random() < self.config.feedback_rate:
            mlflow.log_feedback(
                trace_id=trace_id,
                name="user_satisfaction",
                value=rng.randint(1, 5),
                source=mlflow.AssessmentSource("HUMAN", user),
            )


def run_agent(config: AgentConfig, duration_s: float | None = None) -> int:
    """Serve requests at ``traces_per_s`` (Poisson arrivals) until SIGTERM/SIGINT or ``duration_s``;
    returns how many were served."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    agent = SupportAgent(config)
    deadline = None if duration_s is None else time.monotonic() + duration_s
    served = 0
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        agent.one_request()
        served += 1
        stop.wait(agent.rng.expovariate(config.traces_per_s))
    mlflow.flush(10)
    return served
