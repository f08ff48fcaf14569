"""The course's tools as a real MCP server over stdio (official ``mcp`` SDK), and a small client session.

A top-floor module: its run-Python tool sends model-written code to the grading sandbox (``llmprep.untrusted``:
bubblewrap, no network, allow-list read-only filesystem, CPU and memory limits), never into this process.

``python -m llmprep.agent_server`` serves three tools on stdin/stdout: ``calculator`` (exact integer arithmetic),
``course_search`` (BM25 over the English text of the course's reference notebooks, ch14's ``llmprep.rag``) and
``run_python`` (a program in a fresh sandbox; its verdict and the tail of its output). :func:`demo_session` spawns
that server as a subprocess, lists its tools and calls some: what the reference notebook's agent loop does.
"""
from __future__ import annotations

import json
from functools import lru_cache

from llmprep import agents


@lru_cache(maxsize=1)
def _search_index():
    from llmprep import rag

    docs = rag.course_corpus(english=True)
    return docs, rag.BM25([d.text for d in docs])


def course_search(query: str, top_k: int = 2) -> str:
    """Search the course's own notes (the reference notebooks' English text) with BM25.

    Args:
        query: What to look for, in plain words.
        top_k: How many passages to return (1 to 5).
    """
    top_k = max(1, min(5, int(top_k)))
    docs, index = _search_index()
    scores = index.scores(query)
    best = sorted(range(len(docs)), key=lambda i: -scores[i])[:top_k]
    return "\n\n".join(f"[{docs[i].chapter}] " + " ".join(docs[i].text.split())[:400] for i in best if scores[i] > 0) \
        or "no passage matches"


def run_python(code: str) -> str:
    """Run a short Python program in the course's sandbox (no network, no files outside it, 3 s, 256 MiB).

    Args:
        code: The program's source text; what it prints comes back.
    """
    from llmprep import untrusted

    if not untrusted.available():
        return "refused: no sandbox on this machine (" + untrusted.unavailable_reason() + ")"
    outcome = untrusted.run_untrusted(code, timeout=3.0, memory=256 * 2**20)
    return json.dumps({"verdict": outcome.verdict, "output": outcome.output[-1000:]})


def build_server():
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("llmprep-course-tools")
    for fn in (agents.calculator, course_search, run_python):
        server.tool()(fn)
    return server


def demo_session(python: str, calls: list[tuple[str, dict]], timeout: float = 60.0) -> tuple[list[dict], list[str]]:
    """Spawn the server with the interpreter ``python`` over stdio, list its tools (name, description, input
    schema) and make ``calls`` in order: (the tools, the text of each result)."""
    import anyio
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    async def session():
        with anyio.fail_after(timeout):
            return await _session()

    async def _session():
        params = StdioServerParameters(command=python, args=["-m", "llmprep.agent_server"])
        # the server's stderr to a real file: a notebook kernel's sys.stderr has no file descriptor to hand over
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as client:
                await client.initialize()
                listed = await client.list_tools()
                tools = [{"name": t.name, "description": t.description, "input_schema": t.input_schema}
                         for t in listed.tools]
                texts = []
                for name, arguments in calls:
                    result = await client.call_tool(name, arguments)
                    texts.append("".join(getattr(c, "text", "") for c in result.content))
                return tools, texts

    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    with tempfile.TemporaryFile("w+") as errlog, ThreadPoolExecutor(1) as pool:
        try:  # a thread of its own: a notebook's kernel already runs an event loop
            return pool.submit(anyio.run, session).result()
        except Exception as exc:
            errlog.seek(0)
            tail = " ".join(errlog.read().split())[-300:]
            raise RuntimeError(f"the MCP session failed ({type(exc).__name__}: {exc}); server stderr: {tail}") from exc


if __name__ == "__main__":
    build_server().run()
