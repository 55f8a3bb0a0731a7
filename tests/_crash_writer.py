"""Helper for the crash tests in test_collection.py (not a test module): a small fork server.

``python tests/_crash_writer.py`` imports torch, sentence-transformers and winnow once (it runs no model,
so forking it is safe), then reads one JSON command per line on stdin:

- ``{"op": "write", "home": H, "name": N, "batch": FILE, "flags": DIR, "action": "add"}``: fork a writer
  and print its pid. The writer opens collection N in H, loads the model, creates ``DIR/ready``, waits for
  ``DIR/go``, adds the documents of FILE (a JSON list of Document fields) or, with ``"action": "optimize"``,
  merges every segment into one; then creates ``DIR/done`` and sleeps until killed.
- ``{"op": "reap", "pid": P}``: wait for writer P to end (the test kills it with SIGKILL) and print
  ``reaped P STATUS``.

Each writer is a real process killed with ``kill -9`` at a moment the test picks; the server only saves
the few seconds of importing torch per kill.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sentence_transformers  # noqa: E402,F401  (imported once here, used by the forked writers)
import torch  # noqa: E402,F401

try:  # the ONNX backends' runtime, where installed
    import onnxruntime  # noqa: E402,F401
except ImportError:  # pragma: no cover
    pass

from winnow.collection import Collection  # noqa: E402
from winnow.types import Document  # noqa: E402


def _writer(home: str, name: str, batch: str | None, flags: str, action: str = "add") -> None:
    flag_dir = Path(flags)
    col = Collection.open(name, home=home)
    col.encoder.encode_query("warm up")  # load the model before the kill window opens
    if col.late_settings is not None:  # and the ColBERT model of a collection with late interaction
        col.late_encoder.encode_queries(["warm up"])
    col.chunker
    docs = [Document(**d) for d in json.loads(Path(batch).read_text(encoding="utf-8"))] if batch else []
    (flag_dir / "ready").touch()
    while not (flag_dir / "go").exists():
        time.sleep(0.001)
    if action == "optimize":
        col.optimize()
    else:
        col.add(docs)
    (flag_dir / "done").touch()
    while True:
        time.sleep(60)


def main() -> None:
    print("imported", flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "write":
            pid = os.fork()
            if pid == 0:  # the writer: never returns into the server's loop
                code = 0
                try:
                    devnull = os.open(os.devnull, os.O_RDWR)
                    os.dup2(devnull, 0)
                    os.dup2(devnull, 1)
                    _writer(command["home"], command["name"], command.get("batch"), command["flags"],
                            command.get("action", "add"))
                except BaseException:
                    import traceback

                    traceback.print_exc()
                    code = 1
                finally:
                    os._exit(code)
            print(pid, flush=True)
        elif command["op"] == "reap":
            _, status = os.waitpid(int(command["pid"]), 0)
            print(f"reaped {command['pid']} {status}", flush=True)


if __name__ == "__main__":
    main()
