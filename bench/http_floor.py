"""The least an HTTP front door costs on this machine: a FastAPI endpoint under uvicorn that
reads a JSON body and answers 201, with nothing behind it. ``bench/paths.py`` times it from
the same client code as the gateway's paths, as the baseline of the gateway's added latency."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/floor")
async def floor(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse({"fields": len(body)}, status_code=201)
