"""`protprof compare`: arms over seeds, paired differences with t-intervals, and the figure."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from protprof.cli import main


def write_report(path, label, seed, values):
    results = [
        {"task": "task A", "metric": "m", "value": values[0], "low": values[0] - 0.1,
         "high": values[0] + 0.1, "n_train": 1, "n_test": 1, "note": ""},
        {"task": "task B", "metric": "m", "value": values[1], "low": values[1] - 0.1,
         "high": values[1] + 0.1, "n_train": 1, "n_test": 1, "note": ""},
    ]  # fmt: skip
    path.write_text(json.dumps({"label": label, "seed": seed, "results": results}))
    return path


def test_paired_differences_over_seeds(tmp_path, capsys):
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.05, size=(5, 2))
    shift = np.array([0.04, 0.0])  # arm "multitask": +0.04 on task A, nothing on task B
    noise = rng.normal(0, 0.005, size=(5, 2))
    paths = []
    for seed in range(5):
        paths.append(write_report(tmp_path / f"mlm{seed}.json", "mlm", seed, base[seed]))
        values = base[seed] + shift + noise[seed]
        paths.append(write_report(tmp_path / f"mt{seed}.json", "multitask", seed, values))
    out, figure = tmp_path / "c.md", tmp_path / "c.png"
    args = ["compare", *map(str, paths), "--out", str(out), "--figure", str(figure)]
    assert main(args) == 0
    table = out.read_text()
    assert "| task | metric | mlm (5 seeds) | multitask (5 seeds) |" in table
    rows = {
        line.split(" | ")[0]: line for line in table.splitlines() if "| multitask | 5 |" in line
    }
    # By hand: the mean difference and mean +- t(0.975, 4) * sd / sqrt(5).
    for k, task in enumerate(("| task A", "| task B")):
        d = shift[k] + noise[:, k]
        half = 2.776 * d.std(ddof=1) / np.sqrt(5)
        cells = rows[task].split(" | ")
        assert cells[4] == f"{d.mean():+.3f} [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]"
        assert cells[5].strip(" |") == ("yes" if k == 0 else "no")
    assert figure.stat().st_size > 5000
    # Reports without the baseline arm: no difference section, and no error.
    assert main(["compare", *map(str, paths[1::2]), "--out", str(tmp_path / "d.md")]) == 0
    assert "Paired differences" not in (tmp_path / "d.md").read_text()


def test_seeds_are_paired_not_ordered(tmp_path):
    """Differences pair the same seed of both arms, whatever the order of the files."""
    paths = [
        write_report(tmp_path / "a.json", "mlm", 0, [0.1, 0.1]),
        write_report(tmp_path / "b.json", "mlm", 1, [0.5, 0.5]),
        write_report(tmp_path / "c.json", "profile", 1, [0.6, 0.6]),
        write_report(tmp_path / "d.json", "profile", 0, [0.2, 0.2]),
    ]
    assert main(["compare", *map(str, paths), "--out", str(tmp_path / "c.md")]) == 0
    line = next(x for x in (tmp_path / "c.md").read_text().splitlines() if "| profile | 2 |" in x)
    assert "+0.100 [+0.100, +0.100]" in line  # both seeds differ by exactly 0.1


@pytest.mark.parametrize("bad", ["[1, 2]", "{}", "not json"])
def test_a_bad_report_is_one_line(tmp_path, capsys, bad):
    path = tmp_path / "r.json"
    path.write_text(bad)
    assert main(["compare", str(path), "--out", str(tmp_path / "c.md")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]


def test_untrained_heads_and_the_reference_are_not_differenced(tmp_path, capsys):
    """mlm never trains the profile head: profile − mlm on that head's metric would compare a
    trained head with a random one. The alignment reference and the profile task's baselines
    hold no model at all."""
    paths = []
    for seed in range(3):
        for label in ("mlm", "profile"):
            results = [
                {"task": "t", "metric": f"Spearman rho, {name}", "value": 0.1 * seed + len(label),
                 "low": 0, "high": 1, "n_train": 0, "n_test": 9, "note": ""}
                for name in ("MLM head", "profile head", "alignment profile")
            ] + [
                {"task": "profile", "metric": "KL, baseline: background frequencies",
                 "value": 0.4 + 0.01 * seed, "low": 0, "high": 1, "n_train": 0, "n_test": 9,
                 "note": ""}
            ]  # fmt: skip
            report = {"label": label, "objective": label, "seed": seed, "results": results}
            path = tmp_path / f"{label}{seed}.json"
            path.write_text(json.dumps(report))
            paths.append(path)
    assert main(["compare", *map(str, paths), "--out", str(tmp_path / "c.md")]) == 0
    assert "Paired differences" not in (tmp_path / "c.md").read_text()
    # Two reports of one arm and seed (a copy under another name) are refused, naming both.
    copy = tmp_path / "copy.json"
    copy.write_text(paths[0].read_text())
    capsys.readouterr()
    assert main(["compare", *map(str, paths), str(copy), "--out", str(tmp_path / "d.md")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(copy) in err[0] and str(paths[0]) in err[0], err
    assert not (tmp_path / "d.md").exists()


def test_profile_head_against_the_baselines_mlm_head(tmp_path):
    """The zero-shot scorer each pretraining yields: profile's (and multitask's) profile head
    against mlm's MLM head, paired by seed; the profile head of mlm itself is never used."""
    rng = np.random.default_rng(1)
    mlm_head = rng.normal(0.05, 0.02, size=4)
    gain = 0.2 + rng.normal(0, 0.01, size=4)
    paths = []
    for seed in range(4):
        for label in ("mlm", "profile", "multitask"):
            heads = {
                "MLM head": mlm_head[seed] if label != "profile" else -0.3,
                "profile head": mlm_head[seed] + gain[seed] if label != "mlm" else 0.9,
            }
            results = [
                {"task": "zero-shot (A)", "metric": f"Spearman rho, {head}", "value": value,
                 "low": value - 0.1, "high": value + 0.1, "n_train": 0, "n_test": 9, "note": ""}
                for head, value in heads.items()
            ]  # fmt: skip
            report = {"label": label, "objective": label, "seed": seed, "results": results}
            paths.append(tmp_path / f"{label}{seed}.json")
            paths[-1].write_text(json.dumps(report))
    assert main(["compare", *map(str, paths), "--out", str(tmp_path / "c.md")]) == 0
    table = (tmp_path / "c.md").read_text()
    assert "each arm's profile head − `mlm`'s MLM head" in table
    half = 3.182 * gain.std(ddof=1) / 2  # t(0.975, 3) * sd / sqrt(4)
    expected = f"{gain.mean():+.3f} [{gain.mean() - half:+.3f}, {gain.mean() + half:+.3f}] | yes |"
    for arm in ("profile", "multitask"):
        assert f"| zero-shot (A) | {arm} | 4 | {expected}" in table
    assert "| zero-shot (A) | mlm |" not in table


def test_only_zero_shot_rows_set_heads_against_each_other(tmp_path):
    """The profile task's KL rows (or any probe reporting both heads) are not zero-shot
    scorers: the head-against-head section takes zero-shot rows only."""
    paths = []
    for seed in range(3):
        for label in ("mlm", "profile"):
            results = [
                {"task": task, "metric": f"{metric}, {head}", "value": 0.1 * seed + len(label),
                 "low": 0, "high": 1, "n_train": 0, "n_test": 9, "note": ""}
                for task, metric in (("profile (store)", "KL, model"), ("probe (X)", "rho"))
                for head in ("MLM head", "profile head")
            ]  # fmt: skip
            report = {"label": label, "objective": label, "seed": seed, "results": results}
            paths.append(tmp_path / f"{label}{seed}.json")
            paths[-1].write_text(json.dumps(report))
    assert main(["compare", *map(str, paths), "--out", str(tmp_path / "c.md")]) == 0
    assert "Zero-shot scorers" not in (tmp_path / "c.md").read_text()


def test_arms_without_seeds_to_pair_are_named_once(tmp_path, caplog):
    """The untrained model has one report: nothing to pair, said once, not once per row. An arm
    that shares seeds but has one row of NaN gets its other rows and a warning naming the row."""
    paths = [write_report(tmp_path / f"m{s}.json", "mlm", s, [0.1 * s, 0.2]) for s in range(3)]
    paths.append(write_report(tmp_path / "u.json", "untrained", 0, [0.0, 0.0]))
    for s in range(3):
        paths.append(write_report(tmp_path / f"p{s}.json", "profile", s, [0.1 * s + 1, np.nan]))
    assert main(["compare", *map(str, paths), "--out", str(tmp_path / "c.md")]) == 0
    said = [r.getMessage() for r in caplog.records if "compare:" in r.getMessage()]
    assert said == [
        "compare: untrained has fewer than 2 seeds in common with mlm; no paired differences",
        "compare: profile vs mlm on task B, m: fewer than 2 finite pairs; no difference",
    ]
    table = (tmp_path / "c.md").read_text()
    assert "| task A | m | profile | 3 | +1.000 [+1.000, +1.000] | yes |" in table
    assert "| m | untrained |" not in table  # no difference row


@pytest.mark.integration
def test_compare_never_imports_torch(tmp_path):
    """Comparing reports reads JSON and the registry's metadata: seconds of torch start-up (and
    a GPU node's CUDA initialisation) would be for nothing."""
    paths = [write_report(tmp_path / f"{arm}.json", arm, 0, [0.5, 0.6]) for arm in ("mlm", "mt")]
    code = (
        "import sys; from protprof.cli import main; "
        f"assert main(['-q', 'compare', *{[str(p) for p in paths]!r}, '--out', "
        f"{str(tmp_path / 'c.md')!r}]) == 0; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (
        "| task A | m | 0.500 [0.400, 0.600] | 0.500 [0.400, 0.600] |"
        in (tmp_path / "c.md").read_text()
    )
