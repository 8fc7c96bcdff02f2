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


def test_a_cluster_missing_a_module_is_refused_with_its_name(cluster):
    from distributed import Client

    with Client(cluster) as client:
        assert extract.missing_modules(client, extract.TASK_MODULES) == {}
        missing = extract.missing_modules(client, ["pipelines", "no_such_toolkit_module"])
    workers = sorted(process for process in missing if process != "scheduler")
    assert "scheduler" in missing and len(workers) == 2
    assert all(worker.startswith("tcp://127.0.0.1:") for worker in workers)
    assert all(names == ["no_such_toolkit_module"] for names in missing.values())


def test_extraction_stops_at_once_when_the_cluster_lacks_the_toolkit(dataset, tmp_path, cluster,
                                                                     monkeypatch, capsys):
    root, config, _ = dataset
    monkeypatch.setattr(extract, "TASK_MODULES", ("features", "no_such_toolkit_module"))
    out = tmp_path / "dask.parquet"
    assert extract.main(["--config", str(config), "--data-root", str(root), "--out", str(out),
                         "--backend", "dask", "--scheduler", cluster]) == 2
    error = capsys.readouterr().err
    assert f"the Dask cluster at {cluster} cannot import this toolkit" in error
    assert "scheduler: no_such_toolkit_module" in error
    assert not out.exists()


def test_dask_backend_needs_a_scheduler(dataset, tmp_path, capsys):
    root, config, _ = dataset
    assert extract.main(["--config", str(config), "--data-root", str(root), "--out",
                         str(tmp_path / "f.parquet"), "--backend", "dask"]) == 2
    assert "--backend dask needs --scheduler" in capsys.readouterr().err
