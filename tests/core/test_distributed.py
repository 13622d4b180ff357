"""Sharded scans on a 2-worker Dask LocalCluster: equal to one process (digits CNN, MiniLM), data read
on the workers, a worker killed mid-scan, a failing shard, Ctrl-C, and bad input refused before any work."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch
from test_scan import assert_same, quiet_scan, small_model
from torch.utils.data import Dataset, TensorDataset

import neurowidgets as nw
from neurowidgets.core import distributed
from neurowidgets.core.distributed import ShardError, plan_shards

dask_distributed = pytest.importorskip("distributed")
# The workers cannot import this test module: its datasets and functions travel by value, as those
# of a notebook do.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

LAYERS = ["conv2", "fc1"]
SETTINGS = dict(k=6, samples=3, batch_size=50)

# The scheduler's HTTP server starts even without a dashboard; on Dask's default port 8787 a second
# cluster (another test, a CI run beside this one) would warn and move: every cluster takes a free port.
NO_DASHBOARD = {"dashboard_address": None, "scheduler_kwargs": {"dashboard_address": ":0"}}


@pytest.fixture(scope="module")
def client():
    """Two worker processes of one thread each (torch in each uses one thread: Dask's nanny sets
    OMP_NUM_THREADS=1), shared by the module's tests."""
    cluster = dask_distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        silence_logs=logging.ERROR,
        **NO_DASHBOARD,
    )
    client = dask_distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def sharded(model, data, layers, client, **kwargs):
    kwargs.setdefault("progress", False)
    return nw.scan(model, data, layers, client=client, **kwargs)


def scheduler_tasks(client) -> int:
    """Tasks the scheduler still holds, once the releases sent by the client have arrived."""
    deadline = time.monotonic() + 10
    while True:
        held = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
        if held == 0 or time.monotonic() > deadline:
            return held
        time.sleep(0.05)


def worker_jobs(client) -> list[int]:
    """Jobs each worker still holds, once its cancelled tasks have stopped (a task that is running when
    it is cancelled finishes first: on a loaded machine that takes a moment)."""
    deadline = time.monotonic() + 30
    while True:
        held = list(client.run(lambda: len(distributed._JOBS)).values())
        if not any(held) or time.monotonic() > deadline:
            return held
        time.sleep(0.05)


# -- equal to one process ------------------------------------------------------------------------


def test_a_sharded_scan_of_the_digits_cnn_equals_one_process_kept_rows_included(digits, client):
    data = digits.images[:600]
    one = quiet_scan(digits.model, data, LAYERS, **SETTINGS)
    for shards in (1, 7):  # 7: shards of 50 and 100 examples, merged in an uneven tree
        result = sharded(digits.model, data, LAYERS, client, shards=shards, **SETTINGS)
        assert_same(result, one)
        assert result.complete and result.info == one.info
    kept = result["conv2"]
    assert kept.keep_activations and kept.kept_rows.shape == one["conv2"].kept_rows.shape
    torch.testing.assert_close(kept.kept_rows, one["conv2"].kept_rows, rtol=0, atol=0, equal_nan=True)
    examples = [e for _, e, _ in one["conv2"].top_k(3)]
    np.testing.assert_array_equal(kept.activations(3, examples), one["conv2"].activations(3, examples))
    assert scheduler_tasks(client) == 0 and worker_jobs(client) == [0, 0]  # nothing left on the cluster


def test_shards_given_as_ranges_and_a_dataset_read_on_the_workers(digits, client):
    data = digits.images[:300]
    one = quiet_scan(digits.model, data, LAYERS, start_index=1000, **SETTINGS)
    ranges = [(120, 300), (0, 37), (37, 120)]  # any order, any sizes
    dataset = TensorDataset(data, torch.zeros(len(data)))  # (image, label) items, collated on the workers
    assert_same(sharded(digits.model, dataset, LAYERS, client, shards=ranges, start_index=1000, **SETTINGS), one)
    assert_same(sharded(digits.model, data.numpy(), LAYERS, client, shards=ranges, start_index=1000, **SETTINGS), one)


def test_a_sharded_scan_of_minilm_text_equals_one_process(minilm, client):
    from pydoc_data.topics import topics

    model, tokenizer = minilm
    words = " ".join(topics[key] for key in sorted(topics)).split()
    texts = [" ".join(words[i : i + 5 + i % 40]) for i in range(0, 64 * 60, 60)]  # 5 to 44 words
    layers = ["encoder.layer.1.intermediate"]
    settings = dict(k=5, samples=2, batch_size=16, tokenizer=tokenizer, max_length=40)
    one = quiet_scan(model, texts, layers, **settings)
    result = sharded(model, texts, layers, client, shards=3, **settings)  # 16, 16 and 32 texts: whole batches
    assert_same(result, one)
    assert result.info == one.info and result.info["max_length"] == 40


def test_a_function_that_builds_the_model_runs_once_per_worker(digits, client, tmp_path):
    state = {name: t.clone() for name, t in digits.model.state_dict().items()}
    builds = tmp_path / "builds"
    builds.mkdir()

    def build():
        from neurowidgets.datasets import digits_cnn

        (builds / str(os.getpid())).touch()
        model = digits_cnn()
        model.load_state_dict(state)
        return model.eval()

    data = digits.images[:400]
    one = quiet_scan(digits.model, data, LAYERS, **SETTINGS)
    assert_same(sharded(build, data, LAYERS, client, shards=8, **SETTINGS), one)
    assert 1 <= len(list(builds.iterdir())) <= 2  # one build per worker that ran a shard, not one per shard


# -- data that lives elsewhere -----------------------------------------------------------------------


def save_shard(path: Path, images: torch.Tensor) -> Path:
    torch.save(images.clone(), path)
    return path


def test_per_shard_loaders_read_their_files_on_the_workers(digits, client, tmp_path):
    data = digits.images[:300]
    ranges = [(0, 100), (100, 180), (180, 300)]
    files = [save_shard(tmp_path / f"part{i}.pt", data[a:b]) for i, (a, b) in enumerate(ranges)]
    loaders = [lambda f=f: torch.load(f) for f in files]
    assert_same(
        sharded(digits.model, loaders, LAYERS, client, shards=ranges, **SETTINGS),
        quiet_scan(digits.model, data, LAYERS, **SETTINGS),
    )
    with pytest.raises(TypeError, match=r"loaders need shards=\[\(start, stop\)"):
        sharded(digits.model, loaders, LAYERS, client, shards=3, **SETTINGS)
    with pytest.raises(ValueError, match="3 loaders but 2 shard ranges"):
        sharded(digits.model, loaders, LAYERS, client, shards=ranges[:2], **SETTINGS)
    short = save_shard(tmp_path / "short.pt", data[100:170])
    wrong = [loaders[0], lambda: torch.load(short), loaders[2]]  # shard 1's file holds 70 examples, not 80
    with pytest.raises(ShardError, match=r"shard 1 \(examples 100–179\).*gave 70 examples"):
        sharded(digits.model, wrong, LAYERS, client, shards=ranges, **SETTINGS)


# -- faults ----------------------------------------------------------------------------------------


class Announced(Dataset):
    """Images whose example ``at`` writes its worker's pid to ``marker`` and waits, the first time only."""

    def __init__(self, images, marker: Path, at: int):
        self.images, self.marker, self.at = images, marker, at

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if i == self.at and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            time.sleep(60)
        return self.images[i]


def test_a_worker_killed_mid_scan_loses_and_double_counts_nothing(digits, client, tmp_path):
    data = digits.images[:400]
    marker = tmp_path / "pid"
    dataset = Announced(data, marker, at=230)
    pids = set(client.run(os.getpid).values())
    killed = []

    def kill_the_announcing_worker():
        deadline = time.monotonic() + 60
        while not marker.exists() or not marker.read_text():
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        pid = int(marker.read_text())
        killed.append(pid)
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_the_announcing_worker)
    killer.start()
    try:
        result = sharded(digits.model, dataset, LAYERS, client, shards=8, **SETTINGS)
    finally:
        killer.join()
    assert killed and killed[0] in pids  # a worker of the cluster died in the middle of shard 4
    assert_same(result, quiet_scan(digits.model, data, LAYERS, **SETTINGS))
    client.wait_for_workers(2, timeout=120)  # the nanny restarts it for the next tests


class Failing(Dataset):
    def __init__(self, images, bad: int):
        self.images, self.bad = images, bad

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if i == self.bad:
            raise OSError(f"cannot read example {i}")
        return self.images[i]


def test_a_failing_shard_names_itself_and_cancels_the_others(digits, client):
    dataset = Failing(digits.images[:400], bad=175)
    with pytest.raises(ShardError, match=r"shard 3 \(examples 150–199\).*OSError: cannot read example 175") as error:
        sharded(digits.model, dataset, LAYERS, client, shards=8, **SETTINGS)
    assert "cancelled" in str(error.value) and isinstance(error.value.__cause__, OSError)
    assert scheduler_tasks(client) == 0 and worker_jobs(client) == [0, 0]


class InterruptingBar:
    """Stands in for the progress bar; the second shard's update is where Ctrl-C lands."""

    def __init__(self):
        self.shards = 0

    def update(self, n):
        self.shards += n
        if self.shards == 2:
            raise KeyboardInterrupt

    def close(self):
        pass


def test_ctrl_c_returns_the_merged_shards_done_and_cancels_the_rest(digits, client, monkeypatch):
    monkeypatch.setattr(distributed, "_progress_bar", lambda shards, show: InterruptingBar())
    data = digits.images[:500]
    with pytest.warns(UserWarning, match="interrupted after"):
        partial = sharded(digits.model, data, LAYERS, client, shards=10, progress=True, **SETTINGS)
    assert not partial.complete and 100 <= partial.num_examples < 500
    reference = None
    for start, stop in partial.ranges:  # the partial result is exactly the scan of the shards it holds
        part = quiet_scan(digits.model, data[start:stop], LAYERS, start_index=start, **SETTINGS)
        reference = part if reference is None else reference.merge(part)
    assert_same(partial, reference)
    assert scheduler_tasks(client) == 0


class Slow(Dataset):
    def __init__(self, images, seconds: float):
        self.images, self.seconds = images, seconds

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        time.sleep(self.seconds)
        return self.images[i]


def test_a_real_ctrl_c_before_any_shard_is_done_raises(digits, client, ctrl_c_raises):
    def ctrl_c():
        time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=ctrl_c)
    presser.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            sharded(digits.model, Slow(digits.images[:4], 1.5), LAYERS, client, shards=2, **SETTINGS)
    finally:
        presser.join()
    assert scheduler_tasks(client) == 0


# -- bad input ---------------------------------------------------------------------------------------


def test_shards_that_overlap_or_leave_a_gap_are_refused_before_any_work(digits, client):
    data = digits.images[:100]
    with pytest.raises(ValueError, match="shards overlap"):
        sharded(digits.model, data, LAYERS, client, shards=[(0, 60), (50, 100)])
    with pytest.raises(ValueError, match="gap: examples 40–49 are in no shard"):
        sharded(digits.model, data, LAYERS, client, shards=[(0, 40), (50, 100)])
    with pytest.raises(ValueError, match="examples 90–99 are in no shard"):
        sharded(digits.model, data, LAYERS, client, shards=[(0, 90)])
    with pytest.raises(ValueError, match="needs 0 <= start < stop"):
        sharded(digits.model, data, LAYERS, client, shards=[(0, 0), (0, 100)])
    with pytest.raises(ValueError, match="between 1 and the number of examples"):
        sharded(digits.model, data, LAYERS, client, shards=101)
    with pytest.raises(TypeError, match="cannot cut DataLoader"):
        sharded(digits.model, torch.utils.data.DataLoader(data), LAYERS, client)
    with pytest.raises(nw.LayerError):
        sharded(digits.model, data, ["conv9"], client)
    with pytest.raises(TypeError, match="unexpected keyword argument 'topk'"):
        sharded(digits.model, data, LAYERS, client, topk=3)
    with pytest.raises(ValueError, match="batch_size must be"):
        sharded(digits.model, data, LAYERS, client, batch_size=0)
    assert scheduler_tasks(client) == 0 and worker_jobs(client) == [0, 0]


def test_shards_of_a_number_are_cut_at_whole_batches():
    assert [(s.start, s.stop) for s in plan_shards(100, 3, 2, 16)] == [(0, 32), (32, 64), (64, 100)]
    assert [(s.start, s.stop) for s in plan_shards(10, 4, 2, 16)] == [(0, 2), (2, 5), (5, 7), (7, 10)]
    assert len(plan_shards(1000, None, 2, 10)) == 8  # 4 per worker thread


def test_a_model_that_cannot_be_pickled_says_so_and_suggests_a_builder(client):
    model = small_model()
    model.lock = threading.Lock()  # module attributes travel with it
    with pytest.raises(TypeError, match=r"the model cannot be pickled.*pass a function that builds the model"):
        sharded(model, torch.randn(40, 5), ["act"], client, shards=2)
    assert scheduler_tasks(client) == 0
    result = sharded(lambda: small_model(), torch.randn(40, 5), ["act"], client, shards=2, k=3)  # the suggested fix
    assert result.num_examples == 40


def test_a_closed_client_or_one_without_workers_is_refused(digits):
    data = digits.images[:50]
    with dask_distributed.LocalCluster(n_workers=0, processes=False, **NO_DASHBOARD) as cluster:
        empty = dask_distributed.Client(cluster)
        with pytest.raises(ValueError, match="has no workers"):
            sharded(digits.model, data, LAYERS, empty)
        empty.close()
        with pytest.raises(ValueError, match="client is closed"):
            sharded(digits.model, data, LAYERS, empty)
    with pytest.raises(TypeError, match=r"must be a dask\.distributed\.Client"):
        sharded(digits.model, data, LAYERS, "tcp://127.0.0.1:8786")
    with pytest.raises(TypeError, match="shards= needs client="):
        nw.scan(digits.model, data, LAYERS, shards=2)


def test_k_larger_than_all_the_data_warns_once_on_the_client(digits, client):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sharded(digits.model, digits.images[:10], LAYERS, client, shards=2, k=20)
    assert [str(w.message) for w in caught if "larger than" in str(w.message)] == [
        "k=20 is larger than the number of examples scanned (10): each unit's top_k lists all of them"
    ]
