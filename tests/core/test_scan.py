"""scan(): data kinds, merge, save/load, cancellation, the cache, text padding and bad input."""

from __future__ import annotations

import importlib
import signal
import warnings
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import neurowidgets as nw
from neurowidgets.core import storage
from neurowidgets.core.probe import LayerError, ModelCallError
from neurowidgets.core.stats import _ARRAYS, _ROW_ARRAYS, LayerStats

EXACT = [name for name in _ARRAYS + _ROW_ARRAYS if name not in ("mean_", "m2")]


def assert_same(a: nw.ScanResult, b: nw.ScanResult, moments_exact=False):
    assert a.layers == b.layers and a.num_examples == b.num_examples and a.ranges == b.ranges
    for layer in a.layers:
        x, y = a[layer], b[layer]
        assert x.settings() == y.settings() and x.positions_shape == y.positions_shape
        for name in EXACT if x.keep_activations else EXACT[: -len(_ROW_ARRAYS)]:
            torch.testing.assert_close(getattr(x, name), getattr(y, name), rtol=0, atol=0, equal_nan=True, msg=name)
        if moments_exact:
            np.testing.assert_array_equal(x.mean, y.mean)
            np.testing.assert_array_equal(x.var, y.var)
        else:
            np.testing.assert_allclose(x.mean, y.mean, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(x.var, y.var, rtol=1e-6, atol=1e-7)


def small_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(fc=nn.Linear(5, 7), act=nn.ReLU(), out=nn.Linear(7, 3)))


def quiet_scan(*args, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("cache", False)
    return nw.scan(*args, **kwargs)


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# -- merge and save ---------------------------------------------------------------------------------


def test_merge_of_two_shards_equals_the_full_scan(digits):
    probe = nw.Probe(digits.model)
    data = digits.images[:300]
    layers = ["conv2", "fc1"]
    settings = dict(k=6, samples=3, batch_size=50)
    full = quiet_scan(probe, data, layers, **settings)
    first = quiet_scan(probe, data[:130], layers, **settings)
    second = quiet_scan(probe, data[130:], layers, start_index=130, **settings)
    assert second.ranges == [(130, 300)]
    assert_same(first.merge(second), full)
    assert_same(second.merge(first), full)
    with pytest.raises(ValueError, match="share examples"):
        first.merge(quiet_scan(probe, data[100:140], layers, start_index=100, **settings))
    with pytest.raises(ValueError, match="different layers"):
        first.merge(quiet_scan(probe, data[130:], ["fc1"], start_index=130, **settings))
    with pytest.raises(ValueError, match="different settings"):
        first.merge(quiet_scan(probe, data[130:], layers, start_index=130, k=5, samples=3))


def test_save_and_load_round_trip_exactly(digits, tmp_path):
    probe = nw.Probe(digits.model)
    result = quiet_scan(probe, digits.images[:200], ["conv1", "relu3"], k=4, batch_size=64)
    path = result.save(tmp_path / "digits-scan.npz")
    loaded = nw.load_scan(path)
    assert_same(loaded, result, moments_exact=True)
    assert loaded.info == result.info and loaded.complete and loaded.layers == ["conv1", "relu3"]
    for layer in result.layers:
        assert loaded[layer].state()[0] == result[layer].state()[0]
    with np.load(path, allow_pickle=False) as archive:  # plain arrays: no pickle needed
        assert "meta" in archive.files
    with zipfile.ZipFile(path) as archive:  # kept rows (float16) stored as they are, the rest deflated
        kinds = {info.filename.split(".")[-2]: info.compress_type for info in archive.infolist()}
    assert kinds["kept_rows"] == zipfile.ZIP_STORED and kinds["hist"] == zipfile.ZIP_DEFLATED
    (tmp_path / "other.npz").write_bytes(b"not a scan")
    with pytest.raises(ValueError, match="not a saved scan"):
        nw.load_scan(tmp_path / "other.npz")


def test_scans_saved_before_kept_activations_load_without_them(digits, tmp_path):
    probe = nw.Probe(digits.model)
    result = quiet_scan(probe, digits.images[:100], ["relu2"], k=4)
    meta, arrays = storage.read_archive(result.save(tmp_path / "new.npz"))
    for layer_meta in meta["layers"]:  # what a file of STATS_VERSION 1 holds
        del layer_meta["keep_activations"]
    old = {name: a for name, a in arrays.items() if name.split(".")[-1] not in _ROW_ARRAYS}
    meta = {key: value for key, value in meta.items() if key not in ("format", "version")}
    loaded = nw.load_scan(storage.write_archive(tmp_path / "old.npz", meta, old))
    assert not loaded["relu2"].keep_activations and loaded["relu2"].top_k(0) == result["relu2"].top_k(0)
    with pytest.raises(ValueError, match="one part kept its examples' activations"):
        loaded.merge(quiet_scan(probe, digits.images[100:150], ["relu2"], k=4, start_index=100))


def test_scans_saved_before_the_bottom_k_load_without_it(digits, tmp_path):
    probe = nw.Probe(digits.model)
    result = quiet_scan(probe, digits.images[:100], ["conv2"], k=4)
    meta, arrays = storage.read_archive(result.save(tmp_path / "new.npz"))
    old = {name: a for name, a in arrays.items() if not name.split(".")[-1].startswith("bottom_")}
    for name in ("layer0.kept_examples", "layer0.kept_rows"):  # STATS_VERSION 2: top-k, then samples
        old[name] = np.concatenate([arrays[name][:, :4], arrays[name][:, 8:]], 1)
    loaded = nw.load_scan(storage.write_archive(tmp_path / "v2.npz", meta, old))["conv2"]
    stats = result["conv2"]
    assert loaded.top_k(3) == stats.top_k(3) and loaded.kept_rows.shape == stats.kept_rows.shape
    examples = [e for _, e, _ in stats.top_k(3)]
    np.testing.assert_array_equal(loaded.activations(3, examples), stats.activations(3, examples))
    with pytest.raises(ValueError, match="saved before scans kept the bottom-k"):
        loaded.bottom_k(3)
    assert stats.bottom_k(3)[0][0] == stats.min[3]


def test_keep_activations_is_an_option_of_the_scan_and_of_its_cache_key(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROWIDGETS_CACHE", str(tmp_path))
    data = digits.images[:80]
    kept = nw.scan(digits.model, data, "conv2", k=3, progress=False)
    bare = nw.scan(digits.model, data, "conv2", k=3, progress=False, keep_activations=False)
    assert not bare.from_cache and not bare["conv2"].keep_activations and kept["conv2"].keep_activations
    assert kept["conv2"].kept_rows.shape == (16, 2 * 3 + 4 * 4, 64)  # units × (2k + 4 intervals × samples) × 8×8
    for layer_stats in (kept["conv2"], bare["conv2"]):
        assert layer_stats.top_k(5) == kept["conv2"].top_k(5)
    assert nw.scan(digits.model, data, "conv2", k=3, progress=False, keep_activations=False).from_cache


# -- data kinds ---------------------------------------------------------------------------------------


class Pairs(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_every_kind_of_data_gives_the_same_statistics():
    model = small_model()
    probe = nw.Probe(model)
    x = torch.randn(70, 5)
    y = torch.arange(70)
    reference = quiet_scan(probe, x, ["act", "out"], k=5, batch_size=16)
    kinds = {
        "numpy": (x.numpy(), {}),
        "TensorDataset pairs": (TensorDataset(x, y), {}),
        "TensorDataset": (TensorDataset(x), {}),
        "Dataset of pairs": (Pairs(x, y), {}),
        "DataLoader": (DataLoader(TensorDataset(x, y), batch_size=16), {}),
        "generator of pairs": (((x[i : i + 16], y[i : i + 16]) for i in range(0, 70, 16)), {}),
        "list of batches": ([x[i : i + 16] for i in range(0, 70, 16)], {}),
        "inputs=": ([{"pixels": x[i : i + 16]} for i in range(0, 70, 16)], {"inputs": lambda b: b["pixels"]}),
    }
    for name, (data, extra) in kinds.items():
        result = quiet_scan(probe, data, ["act", "out"], k=5, batch_size=16, **extra)
        try:
            assert_same(result, reference)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None


def test_a_module_is_wrapped_in_a_probe_and_one_layer_name_is_a_list():
    model = small_model()
    result = quiet_scan(model, torch.randn(10, 5), "act", k=2)
    assert result.layers == ["act"] and result["act"].units == 7
    assert isinstance(result["act"], LayerStats)
    with pytest.raises(LayerError, match="was not scanned"):
        result["out"]


# -- cancellation ---------------------------------------------------------------------------------


def test_keyboard_interrupt_returns_the_partial_result_and_leaves_no_hook():
    model = small_model()
    probe = nw.Probe(model)
    x = torch.randn(100, 5)

    def interrupted():
        for i in range(10):
            if i == 3:
                raise KeyboardInterrupt
            yield x[i * 10 : (i + 1) * 10]

    with pytest.warns(UserWarning, match="interrupted after 30 examples"):
        result = quiet_scan(probe, interrupted(), ["act", "out"], k=4, batch_size=10)
    assert not result.complete and result.num_examples == 30
    assert no_hooks(model)
    assert_same(result, quiet_scan(probe, x[:30], ["act", "out"], k=4, batch_size=10))
    assert result["act"].top_k(0)  # usable

    class StopsInForward(nn.Module):  # the interrupt comes inside the model's forward
        def __init__(self):
            super().__init__()
            self.inner, self.calls = small_model(), 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 4:
                raise KeyboardInterrupt
            return self.inner(x)

    stopping = StopsInForward()
    with pytest.warns(UserWarning, match="interrupted after 30 examples"):
        partial = quiet_scan(stopping, x, "inner.act", k=4, batch_size=10)
    assert partial.num_examples == 30 and no_hooks(stopping)
    with pytest.raises(KeyboardInterrupt):  # nothing done yet: nothing to return
        quiet_scan(probe, interrupted_at_once(), "act")


def interrupted_at_once():
    raise KeyboardInterrupt
    yield


def test_ctrl_c_during_the_statistics_waits_until_every_layer_has_the_batch(monkeypatch, ctrl_c_raises):
    model = small_model()
    x = torch.randn(50, 5)
    original = LayerStats.update
    calls = []

    def update(self, *args, **kwargs):
        calls.append(self.layer)
        if len(calls) == 5:  # batch 2, first layer: a real SIGINT arrives mid-batch
            signal.raise_signal(signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LayerStats, "update", update)
    with pytest.warns(UserWarning, match="interrupted after 30 examples"):
        result = quiet_scan(model, x, ["act", "out"], k=3, batch_size=10)
    monkeypatch.setattr(LayerStats, "update", original)
    assert result["act"].count[0] == result["out"].count[0] == 30
    assert_same(result, quiet_scan(model, x[:30], ["act", "out"], k=3, batch_size=10))


# -- cache ----------------------------------------------------------------------------------------


class Counting(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_the_cache_reloads_and_misses_on_any_change(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROWIDGETS_CACHE", str(tmp_path))
    model = Counting(small_model())
    probe = nw.Probe(model)
    x = torch.randn(40, 5)

    def run(data=x, layers=("inner.act",), **kwargs):
        before = model.calls
        result = nw.scan(probe, data, list(layers), k=3, batch_size=10, progress=False, **kwargs)
        return result, model.calls - before

    first, calls = run()
    assert calls == 4 and not first.from_cache
    assert list((tmp_path / "scans").glob("scan-*.npz"))
    again, calls = run()
    assert calls == 0 and again.from_cache
    assert_same(again, first, moments_exact=True)
    assert run(cache=False)[1] == 4
    assert run(threshold=0.5)[1] == 4  # other settings
    assert run(layers=("inner.out",))[1] == 4  # other layers
    changed = x.clone()
    changed[7, 2] += 1e-3
    assert run(data=changed)[1] == 4  # other data
    with probe.edit({"inner.act": nw.ablate(units=[0])}):
        assert run()[1] == 4  # active edits change the activations
    with torch.no_grad():
        model.inner.fc.weight[0, 0] += 1e-3
    assert run()[1] == 4  # other weights
    assert run()[1] == 0  # ... which are now cached too
    # data that cannot be fingerprinted is scanned every time, unless a data_key names it
    assert run(data=iter([x[:20], x[20:]]))[1] == 2
    assert run(data=iter([x[:20], x[20:]]))[1] == 2
    assert run(data=iter([x[:20], x[20:]]), data_key="x-v1")[1] == 2
    assert run(data=iter([x[:20], x[20:]]), data_key="x-v1")[1] == 0


def test_an_interrupted_scan_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROWIDGETS_CACHE", str(tmp_path))
    model = small_model()

    class Flaky(Dataset):
        def __len__(self):
            return 30

        def __getitem__(self, i):
            if i == 25:
                raise KeyboardInterrupt
            return torch.ones(5) * i

    with pytest.warns(UserWarning, match="interrupted"):
        nw.scan(model, Flaky(), "act", batch_size=10, data_key="flaky", progress=False)
    assert not list(tmp_path.glob("scans/*.npz"))


# -- bad input --------------------------------------------------------------------------------------


def test_unknown_layer_raises_the_probes_error_before_any_work():
    model = Counting(small_model())
    with pytest.raises(LayerError, match=r"inner\.act"):
        quiet_scan(model, torch.randn(10, 5), "act")
    assert model.calls == 0


def test_empty_data_raises():
    model = small_model()
    for empty in (torch.zeros(0, 5), [], iter([]), TensorDataset(torch.zeros(0, 5))):
        with pytest.raises(ValueError, match="empty data"):
            quiet_scan(model, empty, "act")


def test_k_larger_than_the_data_lists_every_example_with_a_warning():
    model = small_model()
    with pytest.warns(UserWarning, match="k=50 is larger than the number of examples scanned"):
        result = quiet_scan(model, torch.randn(12, 5), ["act", "out"], k=50, batch_size=5)
    assert len(result["out"].top_k(0)) == 12
    assert sorted(e for _, e, _ in result["out"].top_k(0)) == list(range(12))


def test_data_of_the_wrong_shape_names_the_batch_and_the_expected_shape(digits):
    probe = nw.Probe(digits.model)
    with pytest.raises(ModelCallError, match=r"batch 0 \(examples 0–31\).*expects input of shape \(batch, 1"):
        quiet_scan(probe, digits.images[:64].reshape(64, 64), "fc1", batch_size=32)
    good = digits.images[:64]
    batches = [good[:32], good[32:], good[:8, :, :4, :4].reshape(8, 16)]
    with pytest.raises(ModelCallError, match=r"batch 2 .* the first batch was tensor\(32, 1, 8, 8\)"):
        quiet_scan(probe, batches, "fc1")
    assert no_hooks(digits.model)


def test_other_bad_arguments():
    model = small_model()
    x = torch.randn(10, 5)
    with pytest.raises(ValueError, match="batch_size"):
        quiet_scan(model, x, "act", batch_size=0)
    with pytest.raises(ValueError, match="k must be"):
        quiet_scan(model, x, "act", k=-1)
    with pytest.raises(TypeError, match="list of strings"):
        quiet_scan(model, "one text", "act")
    with pytest.raises(TypeError, match="needs a tokenizer"):
        quiet_scan(model, ["a text"], "act")
    with pytest.raises(ValueError, match="not among the scanned layers"):
        quiet_scan(model, x, "act", bounds={"out": (0, 1)})
    with pytest.raises(ValueError, match="needs at least one layer"):
        quiet_scan(model, x, [])
    with pytest.raises(ValueError, match="batch"):  # no tensor in the batch
        quiet_scan(model, [{"a": 1}], "act")


class Ragged(nn.Module):
    def forward(self, x):
        return x[:, : 3 + int(x[0, 0] > 100)]


def test_a_layer_that_changes_its_number_of_units_is_an_error():
    model = nn.Sequential(OrderedDict(ragged=Ragged()))
    batches = [torch.zeros(2, 5), torch.full((2, 5), 200.0)]
    with pytest.raises(ValueError, match=r"batch 1 .* 4 units in this batch, 3 in the batches before"):
        quiet_scan(model, batches, "ragged")


def test_progress_bar(capsys):
    nw.scan(small_model(), torch.randn(30, 5), "act", k=4, batch_size=10, cache=False, progress=True)
    assert "scan act" in capsys.readouterr().err


# -- text --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def texts():
    from pydoc_data.topics import topics

    words = " ".join(topics[name] for name in sorted(topics)[:6]).split()
    lengths = [3, 40, 9, 17, 1, 33, 5, 26, 12, 7, 48, 2]
    texts, start = [], 0
    for n in lengths:
        texts.append(" ".join(words[start : start + n]))
        start += n
    return texts


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_padded_positions_count_in_no_statistic(minilm, texts, device):
    model, tokenizer = minilm
    try:
        check_padding(nw.Probe(model.to(device)), tokenizer, texts)
    finally:
        model.to("cpu")


def check_padding(probe, tokenizer, texts):
    layer = "encoder.layer.1.intermediate"
    batched = quiet_scan(probe, texts, layer, tokenizer=tokenizer, max_length=40, batch_size=6, k=5)
    one_by_one = None
    for i, text in enumerate(texts):  # no padding at all
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # k is larger than one example
            single = quiet_scan(probe, [text], layer, tokenizer=tokenizer, max_length=40, k=5, start_index=i)
        one_by_one = single if one_by_one is None else one_by_one.merge(single)
    a, b = batched[layer], one_by_one[layer]
    tokens = sum(len(tokenizer(t, truncation=True, max_length=40)["input_ids"]) for t in texts)
    assert int(a.count[0]) == int(b.count[0]) == tokens == a.num_positions
    assert a.positions_shape == (40,)
    np.testing.assert_array_equal(a.count, b.count)
    # padding changes the shape of the matmuls, so values agree to float32 rounding, not bit for bit
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.var, b.var, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.min, b.min, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.max, b.max, rtol=1e-4, atol=1e-5)
    moved = np.abs(a.histograms() - b.histograms()).sum() / 2
    assert moved <= 1e-3 * tokens * a.units  # a value on a bin edge may move to the next bin
    same_top = 0
    for u in range(a.units):
        ta, tb = a.top_k(u), b.top_k(u)
        np.testing.assert_allclose([v for v, _, _ in ta], [v for v, _, _ in tb], rtol=1e-4, atol=1e-5)
        same_top += [(e, p) for _, e, p in ta] == [(e, p) for _, e, p in tb]
    assert same_top >= 0.99 * a.units  # near-ties may swap
    # every top position is a real token of its text
    adapter = nw.TextAdapter(tokenizer, max_length=40)
    for u in range(0, a.units, 97):
        for _, example, position in a.top_k(u):
            assert position < len(adapter.tokens(texts[example]))


def test_text_through_an_adapter_a_mapping_and_the_cache(minilm, texts, tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROWIDGETS_CACHE", str(tmp_path))
    model, tokenizer = minilm
    probe = nw.Probe(model)
    layer = "encoder.layer.0.intermediate"
    adapter = nw.TextAdapter(tokenizer, max_length=24)
    kwargs = dict(k=3, batch_size=4, progress=False)
    by_tokenizer = nw.scan(probe, texts, layer, tokenizer=tokenizer, max_length=24, **kwargs)
    by_adapter = nw.scan(probe, texts, layer, adapter=adapter, **kwargs)
    assert by_adapter.from_cache  # the same tokenization: the same key
    assert_same(by_adapter, by_tokenizer, moments_exact=True)
    shorter = nw.scan(probe, texts, layer, tokenizer=tokenizer, max_length=16, **kwargs)
    assert not shorter.from_cache and shorter[layer].count[0] < by_tokenizer[layer].count[0]
    # pre-tokenized: a mapping of tensors is cut along dim 0 (padded to the longest text overall)
    encoded = adapter(texts)
    mapping = nw.scan(probe, encoded, layer, cache=False, **kwargs)
    np.testing.assert_array_equal(mapping[layer].count, by_tokenizer[layer].count)
    with pytest.raises(TypeError, match="not both"):
        nw.scan(probe, texts, layer, tokenizer=tokenizer, adapter=adapter)


def test_no_warnings_on_a_plain_scan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet_scan(small_model(), torch.randn(40, 5), "act", k=8, batch_size=16)


def test_features_of_an_attached_encoder_are_scanned_like_units(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROWIDGETS_CACHE", str(tmp_path))
    model = small_model()
    probe = nw.Probe(model)
    torch.manual_seed(3)
    encoder = nn.Sequential(nn.Linear(7, 11), nn.ReLU())
    name = probe.attach("act", encoder, name="act.sae")
    x = torch.randn(40, 5)
    result = nw.scan(probe, x, [name], k=3, batch_size=16, progress=False)
    assert result[name].units == 11 and result.num_examples == 40
    with torch.no_grad():
        features = encoder(model.act(model.fc(x)))
    np.testing.assert_array_equal(result[name].max, features.max(0).values.double().numpy())
    assert nw.scan(probe, x, [name], k=3, batch_size=16, progress=False).from_cache
    with torch.no_grad():
        encoder[0].bias += 1.0  # the encoder's weights are part of the cache key
    assert not nw.scan(probe, x, [name], k=3, batch_size=16, progress=False).from_cache


def test_a_scan_that_would_keep_much_says_so(digits, monkeypatch):
    scan_module = importlib.import_module("neurowidgets.core.scan")  # the package's `scan` is the function
    monkeypatch.setattr(scan_module, "KEPT_ROWS_WARNING_BYTES", 16 * (3 + 16) * 64 * 2 - 1)  # conv2's rows, less 1
    with pytest.warns(UserWarning, match="keeps 0.0 GiB of activation rows"):
        quiet_scan(digits.model, digits.images[:40], "conv2", k=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet_scan(digits.model, digits.images[:40], "conv2", k=3, keep_activations=False)
