"""``ember bench`` and its harness: the timing logic against a fake clock, the catalogue's checks,
the records against their documented schema, ``compare``, the plots, and the command."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jsonschema
import numpy as np
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


def test_a_long_call_is_timed_once_per_visit_without_the_wake_up_call():
    clock = FakeClock()
    costs = {"fast": 2.0**-6, "slow": 2.0}  # binary fractions: the fake clock adds them exactly
    t = harness.measure({name: clock.impl(name, cost) for name, cost in costs.items()}, rounds=3, min_time=2.0**-4,
                        min_calls=3, settle=0.125, warmup=1, long_call=0.5, clock=clock, sleep=clock.sleep)
    calls = {name: sum(entry == ("call", name) for entry in clock.log) for name in costs}
    assert calls == {"fast": 1 + 3 * (1 + 4), "slow": 1 + 3}  # warm-up, then per visit: untimed + min_time; one
    assert t["slow"].calls == 3 and t["slow"].median == 2.0 and t["fast"].median == 2.0**-6
    # A function found long only on its first visit (a slow first call after a cheap warm-up) is
    # timed in full then, and once per visit after that.
    clock = FakeClock()
    cost = iter([0.1] + [1.0] * 20)
    t = harness.measure({"x": clock.impl("x", lambda: next(cost))}, rounds=3, min_time=0.0, min_calls=3, settle=0.0,
                        warmup=1, long_call=0.5, clock=clock, sleep=clock.sleep)
    assert t["x"].calls == 3 + 1 + 1 and len(clock.log) == 1 + (1 + 3) + 1 + 1
    with pytest.raises(ValueError, match="long_call must be positive"):
        harness.measure({"a": lambda: None}, long_call=0.0)


def test_a_long_call_can_be_timed_in_the_first_rounds_only_and_its_speedup_pairs_those():
    clock = FakeClock()
    state = {"scale": 1.0}
    drift = iter([1.0, 1.0, 2.0, 4.0])  # per pause: the machine slows down after the first round

    def sleep(seconds):
        state["scale"] = next(drift)
        clock.sleep(seconds)

    costs = {"ember": 2.0**-6, "slow": 1.0}
    impls = {name: clock.impl(name, lambda c=cost: c * state["scale"]) for name, cost in costs.items()}
    t = harness.measure(impls, rounds=3, min_time=0.0, min_calls=1, settle=0.125, warmup=1, long_call=0.5,
                        long_rounds=1, clock=clock, sleep=sleep)
    calls = {name: sum(entry == ("call", name) for entry in clock.log) for name in costs}
    assert calls == {"ember": 1 + 3 * 2, "slow": 1 + 1}  # the slow one: its warm-up, then round one's timed call
    assert len(t["slow"].rounds) == 1 and len(t["ember"].rounds) == 3
    # The ratio of the round both were timed in, not one against Ember's later, slower rounds.
    assert harness.speedup(t, "ember", "slow") == (64.0, 64.0, 64.0)
    with pytest.raises(ValueError, match="long_rounds must be >= 1"):
        harness.measure({"a": lambda: None}, long_rounds=0)


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


@pytest.mark.parametrize("kernel", ["qmatmul_int8", "qmatmul_int8g", "qmatmul_int4", "qmatmul_int4cb"])
def test_the_quantized_matmul_checks_see_a_wrong_last_output(kernel, monkeypatch):
    """The checks sample the output's rows and columns; the last of each (where a partial block
    ends) is always among them."""
    real_matmul, real_gemm = ember.quant.QuantizedWeight.matmul, ember.kernels.gemm.gemm

    def off_matmul(self, x, bias=None, out=None, reference=False):
        y = real_matmul(self, x, bias, out, reference)
        if not reference:
            y[-1, -1] += 1e-3 * (1 + abs(y[-1, -1]))
        return y

    def off_gemm(a, b, out=None, **kwargs):
        real_gemm(a, b, out=out, **kwargs)
        out[-1, -1] += 1e-3 * (1 + abs(out[-1, -1]))

    monkeypatch.setattr(ember.quant.QuantizedWeight, "matmul", off_matmul)
    monkeypatch.setattr(ember.kernels.gemm, "gemm", off_gemm)
    for case in bench.cases(kernel, preset="test"):
        prepared = case.setup()
        for name in ("ember", "ember fp32"):
            prepared.impls[name]()
            with pytest.raises(AssertionError, match=f"{name} (differs from its reference|is wrong)"):
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


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A run of gemm and max_pool2d at 1 and 2 threads, saved as --json writes it."""
    result = bench.run(["gemm", "max_pool2d"], preset="test", threads=[1, 2], rounds=1, progress=False,
                       measure_limits=False)
    return result.save(tmp_path_factory.mktemp("runs") / "run.json")


def _first(data, impl="ember"):
    return next(r for r in data["results"] if r["impl"] == impl)


# Records spoilt in one way each (from a run's), and what load says is wrong.
BROKEN = {
    "no created": (lambda d: {"format": "ember-bench-1", "results": []}, "(no 'created')"),
    "a kernel alone": (lambda d: {**d, "results": [{"kernel": "gemm"}]}, "(results[0] has no 'shape')"),
    "a string": (lambda d: {**d, "results": ["x"]}, "(results[0] must be an object, got str)"),
    "a zero median": (lambda d: {**d, "results": [{**_first(d), "median_s": 0}]},
                      "(results[0] median_s must be a positive number of seconds, got 0)"),
    "no machine": (lambda d: {k: v for k, v in d.items() if k != "machine"}, "(no 'machine')"),
    "a bad limit": (lambda d: {**d, "limits": [{"name": "fma_peak", "threads": 1, "value": "fast", "unit": "GFLOP/s"}]},
                    "(limits[0] value must be a positive number, got 'fast')"),
    "a reference without speed-up": (lambda d: {**d, "results": [{**_first(d, "numpy"), "speedup": None}]},
                                     "(results[0] (numpy) has no speedup)"),
}


@pytest.mark.parametrize("what", list(BROKEN))
def test_load_and_compare_refuse_records_they_cannot_show(what, saved_run, tmp_path, capsys):
    path = tmp_path / "broken.json"
    spoil, problem = BROKEN[what]
    path.write_text(json.dumps(spoil(json.loads(saved_run.read_text()))))
    with pytest.raises(ValueError, match=f"broken.json is not an Ember benchmark record {re.escape(problem)}"):
        bench.load(path)
    for argv in (["--load", str(path)], ["max_pool2d", "--preset", "test", "--rounds", "1", "--quiet", "--compare",
                                         str(path)]):
        assert cli.main(["bench", *argv]) == 2  # bad input: a message, not a crash (1 means a wrong result)
        err = capsys.readouterr().err
        assert err.startswith(f"ember bench: {path} is not an Ember benchmark record") and err.count("\n") == 1


def test_load_shows_and_writes_the_records_selected(saved_run, tmp_path, capsys):
    part = tmp_path / "part.json"
    assert cli.main(["bench", "max_pool2d", "--threads", "1", "--load", str(saved_run), "--json", str(part)]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.split("\n\nCPU:")[0].splitlines()[1:] if line[:1].strip()]
    assert rows and {(r[0], r[2]) for r in rows} == {("max_pool2d", "1")} and f"records: {part}" in out
    data = json.loads(part.read_text())
    jsonschema.validate(data, schema("bench"))
    assert {(r["kernel"], r["threads"]) for r in data["results"]} == {("max_pool2d", 1)}
    assert data["machine"]["threads"] == [1]
    assert cli.main(["bench", "gemm", "--shape", "7x5x3", "--load", str(saved_run)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.split("\n\nCPU:")[0].splitlines()[1:] if line[:1].strip()]
    assert {(r[0], r[1]) for r in rows} == {("gemm", "7x5x3")}
    for argv, message in [(["conv2d"], "holds no records of the kernels, sizes and thread counts asked for"),
                          (["--rounds", "3"], "--rounds: only when measuring, not with --load"),
                          (["--quick"], "--preset quick: only when measuring"),
                          (["nope"], "unknown kernel 'nope'")]:
        assert cli.main(["bench", *argv, "--load", str(saved_run)]) == 2
        assert message in capsys.readouterr().err


def test_compare_against_the_kernels_and_threads_that_ran(saved_run, capsys):
    code = cli.main(["bench", "max_pool2d", "--preset", "test", "--rounds", "1", "--threads", "2", "--quiet",
                     "--compare", str(saved_run)])
    out = capsys.readouterr().out
    assert code == 0
    changes = [line.split() for line in out.split("against ")[1].splitlines()[2:]]
    assert changes and {(r[0], r[2]) for r in changes} == {("max_pool2d", "2")}
    assert "only in" not in out  # the old run's gemm and 1-thread records are no news


def test_outputs_are_checked_before_measuring(saved_run, tmp_path, capsys, monkeypatch):
    def measured(*args, **kwargs):
        raise AssertionError("measured before checking the outputs")

    monkeypatch.setattr(bench.runner, "run", measured)
    before = saved_run.read_bytes()
    for argv, message in [(["--preset", "test", "--json", str(tmp_path)], f"--json {tmp_path} is a folder"),
                          (["--json", str(saved_run), "--compare", str(saved_run)], "is the input"),
                          (["--plot", str(saved_run), "--load", str(saved_run)], "is the input"),
                          (["--plot", str(tmp_path / "roof")], "the file name must end in the image format, one of "
                                                               ".png, .svg"),
                          (["--plot", str(tmp_path / "roof.txt")], "must end in the image format")]:
        assert cli.main(["bench", "gemm", *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert saved_run.read_bytes() == before and list(tmp_path.iterdir()) == []


def test_a_plot_is_written_where_it_is_named(saved_run, tmp_path):
    data = bench.load(saved_run)
    with pytest.raises(ValueError, match="must end in the image format"):
        plot.bench(data, tmp_path / "roof")
    assert list(tmp_path.iterdir()) == []  # no roof.png either
    assert plot.bench(data, tmp_path / "roof.svg") == tmp_path / "roof.svg" and (tmp_path / "roof.svg").exists()


def test_run_takes_one_kernel_name_and_refuses_zero_rounds():
    result = bench.run("max_pool2d", preset="test", rounds=1, progress=False, measure_limits=False)
    assert {r["kernel"] for r in result.results} == {"max_pool2d"}
    assert [c.kernel for c in bench.cases("gemm", preset="test")] == ["gemm"] * 3
    for rounds in (0, -1, 1.5):
        with pytest.raises(ValueError, match="rounds must be an integer >= 1"):
            bench.run("gemm", preset="test", rounds=rounds, progress=False, measure_limits=False)


def test_quantized_kernels_are_judged_by_their_exact_reference(monkeypatch):
    # Small random products have a large rounding error; a right kernel is still right.
    result = bench.run(["qmatmul_int4cb"], shapes=[(2, 40, 8)], rounds=1, progress=False, measure_limits=False)
    assert not result.failures and {r["impl"] for r in result.results} >= {"ember", "ember int4 g32"}
    real = ember.kernels.qmatmul.qmatmul_int4cb

    def one_ulp_off(*args, reference=False, **kwargs):
        out = real(*args, reference=reference, **kwargs)
        if not reference:
            out[-1, -1] = np.nextafter(out[-1, -1], np.float32(np.inf))  # a float32 ulp under NumPy 1 too
        return out

    monkeypatch.setattr(ember.kernels.qmatmul, "qmatmul_int4cb", one_ulp_off)
    result = bench.run(["qmatmul_int4cb"], shapes=[(2, 40, 8)], rounds=1, progress=False, measure_limits=False)
    assert [f["impl"] for f in result.failures] == ["ember"]
    assert "qmatmul 2x40x8: ember differs from its reference" in result.failures[0]["error"]


def test_readme_names_every_kernel():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    listed = re.search(r"kernels are chosen by name \(([^)]*)\)", readme).group(1)
    assert set(re.findall(r"`(\w+)`", listed)) == set(bench.KERNELS)
