"""The catch-all: an unexpected exception is a JSON 500 that is counted, and never leaks a traceback."""

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from serving.metrics import ServerMetrics
from serving.server import ObserveAndContain


def _boom(request):
    raise RuntimeError("secret internal detail")


def test_unexpected_exception_becomes_a_counted_json_500() -> None:
    metrics = ServerMetrics()
    # Placed as in serving.server: inside Starlette's own error middleware, so ours answers first.
    app = Starlette(routes=[Route("/predict", _boom, methods=["POST"])],
                    middleware=[Middleware(ObserveAndContain, metrics=metrics)])

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.post("/predict")

    r = asyncio.run(call())
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert "internal server error" in r.json()["error"] and "secret" not in r.text
    text = metrics.render()
    assert 'serving_errors_total{kind="internal"} 1' in text
    assert 'serving_requests_total{route="/predict",method="POST",status="500"} 1' in text
