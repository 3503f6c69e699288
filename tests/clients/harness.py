"""Driving tests/clients/node/harness.mjs: a partner app built with openid-client and
oauth4webapi, one long-lived Node process per app, one JSON command per line."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).resolve().parent / "node"
ANSWER_TIMEOUT_S = 30.0


class NodeAppError(AssertionError):
    """A step the client library refused or the server answered with an error."""

    def __init__(self, op: str, error: dict[str, Any]) -> None:
        super().__init__(f"{op}: {error}")
        self.error = error


class NodeApp:
    """One partner app process. `call` sends a command and returns the answer's fields;
    `attempt` returns the library's error instead of raising it."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None or not (NODE_DIR / "node_modules" / "openid-client").is_dir():
            raise RuntimeError("the certified clients need Node.js and `npm ci` in "
                               f"{NODE_DIR} (make test runs it)")
        self.process = subprocess.Popen(
            [node, str(NODE_DIR / "harness.mjs")], cwd=NODE_DIR, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def attempt(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the Node harness exited: {self._stderr()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        answer = self.attempt(op, **fields)
        if not answer.pop("ok"):
            raise NodeAppError(op, answer["error"])
        return answer

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(ANSWER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def _stderr(self) -> str:
        self.process.kill()
        assert self.process.stderr is not None
        return self.process.stderr.read()[-4000:]
