"""Fixtures for the service tests: a real PostgreSQL server (initdb + pg_ctl in a temp folder) and
the real HTTP service (uvicorn via `recstack serve`) on loopback ports, never mocks.

PostgreSQL tests skip when its binaries are missing on a laptop but fail when CI=true."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("faiss")

PG_BIN = Path(os.environ.get("RECSTACK_PG_BIN", "/usr/lib/postgresql/15/bin"))
KEY = "test-key-0123456789"
SRC = Path(__file__).resolve().parents[2] / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI (CI=true)")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def pg_server():
    """A private PostgreSQL 15 cluster on 127.0.0.1:<free port>; yields a function making fresh databases."""
    if not (PG_BIN / "initdb").exists():
        _missing(f"PostgreSQL binaries ({PG_BIN}/initdb)")
    pytest.importorskip("psycopg")
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="recstack-pg-"))  # not under pytest's 0700 folders: postgres reads it
    data = root / "data"
    data.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run([*prefix, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*prefix, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=on", "-w", "start"],
                   check=True, capture_output=True)
    import psycopg

    counter = iter(range(10_000))

    def new_db() -> str:
        name = f"t{next(counter)}"
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{port}/{name}"

    try:
        yield new_db
    finally:
        subprocess.run([*prefix, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh database URL of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return request.getfixturevalue("pg_server")()


def train_small(out: Path, seed: int = 0, factors: int = 16, epochs: int = 20) -> Path:
    """A small biased-mf on ML-100K (a few seconds), saved to `out`."""
    from recstack.data import load_ml100k
    from recstack.models.base import make_model
    from recstack.persist import save_model

    data = load_ml100k()
    model = make_model("biased-mf", factors=factors, epochs=epochs, seed=seed, early_stopping=True)
    model.fit(data)
    metrics = {"valid_rmse": float(model.valid_rmse_history_.min())}
    return save_model(out, model, data, metrics=metrics)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    """Two trained versions (different seeds) for swaps."""
    root = tmp_path_factory.mktemp("models")
    return train_small(root / "a", seed=0), train_small(root / "b", seed=1)


@pytest.fixture
def registry(tmp_path, model_dirs):
    from recstack.serve.registry import Registry

    reg = Registry(tmp_path / "registry")
    reg.add(model_dirs[0])
    return reg


class Server:
    """`recstack serve` in a subprocess on a free loopback port."""

    def __init__(self, path: Path, db: str, workers: int = 1, open_writes: bool = False,
                 key: str | None = KEY, env: dict[str, str] | None = None, key_file: Path | None = None) -> None:
        self.path, self.db, self.workers, self.open_writes, self.key = path, db, workers, open_writes, key
        self.env, self.key_file = env or {}, key_file
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = Path(str(path) + f".server-{self.port}.log")

    def start(self, timeout: float = 60.0) -> Server:
        env = {**os.environ, "PYTHONPATH": str(SRC), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               **self.env}
        env.pop("RECSTACK_API_KEY", None)
        if self.key:
            env["RECSTACK_API_KEY"] = self.key
        cmd = [sys.executable, "-m", "recstack", "serve", str(self.path), "--db", self.db,
               "--port", str(self.port), "--workers", str(self.workers)]
        if self.open_writes:
            cmd.append("--open-writes")
        if self.key_file:
            cmd += ["--api-key-file", str(self.key_file)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout}s: {self.log.read_text()[-3000:]}")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def kill(self) -> None:
        """kill -9 the whole process group (uvicorn and its workers)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def serve(tmp_path):
    """Start servers; all are stopped at the end of the test."""
    started: list[Server] = []

    def start(path: Path, db: str | None = None, **kw) -> Server:
        server = Server(path, db or f"sqlite:///{tmp_path / 'events.db'}", **kw).start()
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()
