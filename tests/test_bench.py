"""``ember bench`` and its harness: the timing logic against a fake clock, the catalogue's checks,
the records against their documented schema, ``compare``, the plots, and the command."""

from __future__ import annotations

import json
import sys

import jsonschema
import pytest

import ember
from ember import bench, cli
from ember.bench import harness, plot
from ember.bench.runner import compare_table


class FakeClock:
    """Time that moves only when a call costs something or the harness sleeps."""

    def __init__(self):
        self.now = 0.0
        self.log = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.log.append(("sleep", seconds))
        self.now += seconds

    def impl(self, name, cost):
        def call():
            self.log.append(("call", name))
            self.now += cost() if callable(cost) else cost
        return call


def test_measure_alternates_rounds_pauses_and_reports_medians():
    clock = FakeClock()
    impls = {"a": clock.impl("a", 2.0), "b": clock.impl("b", 3.0), "c": clock.impl("c", 1.0)}
    t = harness.measure(impls, rounds=4, min_time=0.0, min_calls=2, settle=0.5, warmup=1, clock=clock,
                        sleep=clock.sleep)
    assert {k: v.median for k, v in t.items()} == {"a": 2.0, "b": 3.0, "c": 1.0}
    assert all(v.rounds == [v.median] * 4 and v.calls == 8 and v.spread == 0.0 for v in t.values())
    # one warm-up call each, in order, before any pause
    assert clock.log[:3] == [("call", "a"), ("call", "b"), ("call", "c")]
    visits = []  # (pause before it, implementation, calls) per visit, in order
    for i, entry in enumerate(clock.log[3:]):
        if entry[0] == "sleep":
            visits.append((entry[1], clock.log[3 + i + 1][1], 0))
        else:
            assert entry[1] == visits[-1][1]  # a visit calls one implementation
            visits[-1] = visits[-1][:2] + (visits[-1][2] + 1,)
    assert all(v[2] == 1 + 2 for v in visits)  # an untimed call after the pause, then min_calls timed
    assert [v[0] for v in visits] == [0.5] * 12
    order = [v[1] for v in visits]
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]  # the first rotates each round
    assert harness.speedup(t, "c", "b") == (3.0, 3.0, 3.0)


def test_measure_times_until_min_time_and_syncs_each_call():
    clock = FakeClock()
    synced = []
    t = harness.measure({"x": clock.impl("x", 0.3)}, rounds=2, min_time=1.0, min_calls=1, settle=0.0, warmup=0,
                        clock=clock, sleep=clock.sleep, sync=lambda: synced.append(clock.now))
    assert t["x"].calls == 8  # ceil(1.0 / 0.3) = 4 calls per round
    assert len(synced) == 1 + 2 * (1 + 4)  # after the warm-up, then after each visit's untimed call and timed calls
    assert t["x"].median == pytest.approx(0.3)
    clock = FakeClock()
    t = harness.measure({"x": clock.impl("x", 1.0)}, rounds=1, min_time=100.0, min_calls=1, max_calls=5, settle=0.0,
                        clock=clock, sleep=clock.sleep)
    assert t["x"].calls == 5  # max_calls caps a slow case


def test_speedup_is_the_median_of_per_round_ratios_so_drift_cancels():
    clock = FakeClock()
    slow = iter([1.0, 1.0, 2.0, 2.0, 4.0, 4.0] * 3)  # the machine slows down between rounds
    state = {"scale": 1.0}

    def drifting(base):
        def cost():
            return base * state["scale"]
        return cost

    impls = {"ember": clock.impl("ember", drifting(1.0)), "ref": clock.impl("ref", drifting(3.0))}

    def sleep(seconds):
        state["scale"] = next(slow)
        clock.sleep(seconds)

    t = harness.measure(impls, rounds=3, min_time=0.0, min_calls=1, settle=0.1, warmup=0, clock=clock, sleep=sleep)
    assert t["ember"].spread > 0.5  # the medians wander with the machine...
    assert harness.speedup(t, "ember", "ref") == pytest.approx((3.0, 3.0, 3.0))  # ...their ratio does not


def test_warm_up_runs_for_its_time_before_any_timing():
    clock = FakeClock()
    t = harness.measure({"x": clock.impl("x", 0.25)}, rounds=1, min_time=0.0, min_calls=1, settle=0.0, warmup=1,
                        warmup_time=1.0, clock=clock, sleep=clock.sleep)
    assert len(clock.log) == 4 + 1 + 1 and t["x"].calls == 1  # four warm-up calls, the visit's untimed one, one timed


def test_measure_rejects_what_it_cannot_time():
    with pytest.raises(ValueError, match="impls is empty"):
        harness.measure({})
    with pytest.raises(ValueError, match="rounds >= 1"):
        harness.measure({"a": lambda: None}, rounds=0)


def test_every_case_of_the_catalogue_checks_its_result():
    for case in bench.cases(preset="test"):
        prepared = case.setup()
        assert list(prepared.impls)[0] == "ember" and case.work > 0 and case.unit in ("flop", "byte")
        for name, fn in prepared.impls.items():
            fn()
            prepared.check(name)


def test_a_wrong_result_is_a_failure_not_a_time(monkeypatch):
    real = ember.kernels.gemm.gemm

    def off_by_one(a, b, out=None, **kwargs):
        real(a, b, out=out, **kwargs)
        out += 1.0

    monkeypatch.setattr(ember.kernels.gemm, "gemm", off_by_one)
    result = bench.run(["gemm"], preset="test", progress=False, measure_limits=False)
    assert result.failures and {f["impl"] for f in result.failures} == {"ember"}
    assert "gemm 7x5x3: ember is wrong" in result.failures[0]["error"]
    assert not result.results  # a wrong case's times are not reported
    assert "WRONG RESULT: gemm 7x5x3" in result.table()


def schema(name):
    import importlib.resources

    text = importlib.resources.files("ember.bench").joinpath(f"{name}.schema.json").read_text()
    data = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(data)
    return data


def test_records_carry_the_machine_and_validate_against_the_schema(tmp_path):
    result = bench.run(["gemm", "cross_entropy", "gemm_bf16"], preset="test", threads=[1], progress=False)
    path = result.save(tmp_path / "run.json")
    data = json.loads(path.read_text())
    jsonschema.validate(data, schema("bench"))
    machine = data["machine"]
    assert machine["isa"] == ember.get_isa() and machine["threads"] == [1] and machine["cpu_model"]
    assert data["versions"]["ember"] == ember.__version__ and data["precision"] == "fp32"
    assert {item["name"] for item in data["limits"]} == {"fma_peak", "read_bandwidth"}
    for r in data["results"]:
        if r["impl"] == "ember":
            assert r["rate"] == pytest.approx(r["work"] / r["median_s"] * 1e-9) and r["speedup"] is None
            assert (r["fraction_of_limit"] is None) == (r["precision"] == "bf16")
        else:
            assert r["rate"] is None and r["speedup"]["median"] > 0
    assert {r["precision"] for r in data["results"] if r["kernel"] == "gemm_bf16"} == {"bf16", "fp32"}
    assert bench.load(path) == data


def test_references_that_are_not_installed_are_listed_as_skipped(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails, as without PyTorch
    code = cli.main(["bench", "gemm", "max_pool2d", "--preset", "test", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "skipped: gemm 7x5x3 torch: PyTorch is not installed (pip install 'ember[reference]')" in out
    assert " torch " not in out.split("CPU:")[0]  # no torch row in the table


def run_record(impl, median, spread=0.0, shape="8x8x8"):
    return {"kernel": "gemm", "shape": shape, "threads": 2, "precision": "fp32", "impl": impl, "median_s": median,
            "spread": spread}


def test_compare_tells_faster_slower_same_and_missing():
    old = {"results": [run_record("ember", 1.0), run_record("numpy", 1.0), run_record("torch", 1.0, 0.2),
                       run_record("ember", 1.0, shape="1x1x1")]}
    new = {"results": [run_record("ember", 0.5), run_record("numpy", 1.5), run_record("torch", 1.15, 0.1),
                       run_record("ember", 1.0, shape="2x2x2")]}
    verdicts = {(e["shape"], e["impl"]): (e["verdict"], e["change"]) for e in bench.compare(old, new)}
    assert verdicts[("8x8x8", "ember")] == ("faster", -0.5)
    assert verdicts[("8x8x8", "numpy")] == ("slower", 0.5)
    assert verdicts[("8x8x8", "torch")][0] == "same"  # +15%, within the old run's 20% spread
    assert verdicts[("1x1x1", "ember")] == ("only in the old run", None)
    assert verdicts[("2x2x2", "ember")] == ("only in the new run", None)
    text = compare_table(bench.compare(old, new))
    assert "-50.0%" in text and "+50.0%" in text


def test_load_names_the_file_it_cannot_use(tmp_path):
    with pytest.raises(FileNotFoundError, match="no benchmark records at"):
        bench.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not a JSON file of benchmark records"):
        bench.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"benchmarks": []}))
    with pytest.raises(ValueError, match="other.json is not an Ember benchmark record"):
        bench.load(tmp_path / "other.json")


def test_bench_command_writes_json_plot_and_compares(tmp_path, capsys):
    first, second, png = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "roof.png"
    assert cli.main(["bench", "gemm", "cross_entropy", "--preset", "test", "--json", str(first), "--quiet"]) == 0
    code = cli.main(["bench", "gemm", "cross_entropy", "--preset", "test", "--json", str(second), "--compare",
                     str(first), "--plot", str(png), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and f"against {first}" in out and "verdict" in out and f"plot: {png}" in out
    for path in (first, second):
        jsonschema.validate(json.loads(path.read_text()), schema("bench"))
    image = plot.pyplot().imread(png)
    assert image.shape[0] > 400 and image.shape[1] > 400
    assert cli.main(["bench", "--load", str(second)]) == 0
    assert "cross_entropy" in capsys.readouterr().out


def test_bench_command_errors_before_measuring(tmp_path, capsys, monkeypatch):
    assert cli.main(["bench", "--preset", "test", "--json", str(tmp_path / "no" / "x.json")]) == 2
    assert "the folder" in capsys.readouterr().err and not (tmp_path / "no").exists()
    assert cli.main(["bench", "--compare", str(tmp_path / "old.json")]) == 2
    assert "no benchmark records at" in capsys.readouterr().err
    assert cli.main(["bench", "nope"]) == 2
    assert "unknown kernel 'nope'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert cli.main(["bench", "--preset", "test", "--plot", str(tmp_path / "p.png")]) == 2
    assert "plots need matplotlib: pip install 'ember[plot]'" in capsys.readouterr().err


def test_bench_list_names_every_kernel(capsys):
    assert cli.main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in bench.KERNELS)
