"""A member's witness: a small HTTP service (C2SP tlog-witness) with its own key and state.

It cosigns a checkpoint only if the checkpoint is signed by a log it trusts and extends the
last one it cosigned for that log (a consistency proof), so a log cannot show one history to
one member and another to the next without a witness noticing. The state is a small JSON file,
replaced atomically after each cosignature and before the answer leaves, under a lock: two
racing requests cannot roll the witness back.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response

from healthmesh.ledger import notes, witnessing

ADD_CHECKPOINT = "/add-checkpoint"


def generate_witness_key(name: str) -> tuple[str, str]:
    """A witness key: (private signer key, public cosignature/v1 verifier key) in the C2SP text
    formats; the log registers the public one."""
    skey, _ = notes.generate_key(name)
    return skey, notes.parse_signer_key(skey).cosignature_verifier().vkey


class WitnessState:
    """The latest cosigned (size, root) per log origin, in a JSON file."""

    def __init__(self, path: Path, log_keys: list[str]) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.keys_by_origin: dict[str, list[str]] = {}
        for vkey in log_keys:
            self.keys_by_origin.setdefault(notes.parse_verifier_key(vkey).name, []).append(vkey)

    def load(self) -> dict[str, witnessing.LogState]:
        saved = json.loads(self.path.read_text()) if self.path.exists() else {}
        logs = {}
        for origin, vkeys in self.keys_by_origin.items():
            entry = saved.get(origin)
            if entry is None:
                logs[origin] = witnessing.LogState.from_vkeys(origin, vkeys)
            else:
                root = base64.b64decode(entry["root"])
                logs[origin] = witnessing.LogState.from_vkeys(origin, vkeys, int(entry["size"]), root)
        return logs

    def save(self, state: witnessing.LogState) -> None:
        saved = json.loads(self.path.read_text()) if self.path.exists() else {}
        saved[state.origin] = {"size": state.size, "root": base64.b64encode(state.root_hash).decode()}
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "w") as handle:
            json.dump(saved, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


def create_app(signer: notes.Signer, state: WitnessState) -> FastAPI:
    app = FastAPI(title=f"HealthMesh witness {signer.name}", docs_url=None, redoc_url=None)

    @app.post(ADD_CHECKPOINT)
    async def add_checkpoint(request: Request) -> Response:
        body = await request.body()
        with state.lock:
            result = witnessing.handle_add_checkpoint(body, state.load(), signer, int(time.time()))
            if isinstance(result, witnessing.Cosigned):
                state.save(result.state)
        return Response(result.body, status_code=result.status, media_type=result.content_type)

    @app.get("/")
    def describe() -> dict[str, object]:
        return {"witness": signer.cosignature_verifier().vkey, "logs": sorted(state.keys_by_origin)}

    return app


def serve(name: str, key_file: Path, log_keys: list[str], state_file: Path, host: str, port: int) -> None:
    """Run the witness until stopped."""
    import uvicorn

    witness = notes.parse_signer_key(key_file.read_text().strip())
    if witness.name != name:
        raise SystemExit(f"the key in {key_file} belongs to {witness.name!r}, not {name!r}")
    state_file.parent.mkdir(parents=True, exist_ok=True)
    uvicorn.run(create_app(witness, WitnessState(state_file, log_keys)), host=host, port=port)
