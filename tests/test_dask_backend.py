"""Extraction on a real (local) Dask cluster gives the same table as the local process pool."""
import shutil
import socket
import subprocess
import time

import pyarrow.parquet as pq
import pytest

from pipelines import extract

pytest.importorskip("distributed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and a worker process running two worker processes, on loopback."""
    dask = shutil.which("dask") or pytest.skip("the dask command is not installed")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = open(tmp_path / "dask.log", "w")
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--no-dashboard"], stdout=logs, stderr=logs)
    worker = subprocess.Popen([dask, "worker", address, "--nworkers", "2", "--nthreads", "1",
                               "--no-dashboard", "--local-directory", str(tmp_path / "workers")],
                              stdout=logs, stderr=logs)
    try:
        from distributed import Client
        deadline = time.time() + 60
        while True:
            try:
                with Client(address, timeout=5) as client:
                    client.wait_for_workers(2, timeout=max(1, deadline - time.time()))
                break
            except (OSError, TimeoutError):
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        yield address
    finally:
        for process in (worker, scheduler):
            process.terminate()
        for process in (worker, scheduler):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        logs.close()


def test_dask_backend_matches_local_backend(dataset, tmp_path, cluster):
    root, config, _ = dataset
    local, remote = tmp_path / "local.parquet", tmp_path / "dask.parquet"
    common = ["--config", str(config), "--data-root", str(root), "--chunk-size", "6"]
    assert extract.main([*common, "--out", str(local), "--n-jobs", "2"]) == 0
    assert extract.main([*common, "--out", str(remote), "--backend", "dask",
                         "--scheduler", cluster]) == 0
    assert pq.read_table(remote).equals(pq.read_table(local))


def test_dask_backend_needs_a_scheduler(dataset, tmp_path, capsys):
    root, config, _ = dataset
    assert extract.main(["--config", str(config), "--data-root", str(root), "--out",
                         str(tmp_path / "f.parquet"), "--backend", "dask"]) == 2
    assert "--backend dask needs --scheduler" in capsys.readouterr().err
