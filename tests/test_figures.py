"""The figures package (neurobias.figures): its registry, and the noise-robustness figure job's caption.
The noise-robustness figure's own tests: tests/test_figures_noise_robustness.py."""

from __future__ import annotations

from neurobias.figures import FIGURES
from neurobias.figures.noise_robustness import plot_noise_robustness
from test_figures_noise_robustness import tidy


def test_registry():
    assert FIGURES["noise_robustness"] is plot_noise_robustness


# -- captions say which test -----------------------------------------------------------------------
def test_noise_caption_says_which_test(tmp_path, monkeypatch):
    import neurobias.data as data
    import neurobias.figures as figures
    from neurobias.jobs import figure_noise_robustness, stats as stats_job
    paths = []
    for arm, frame in tidy().groupby("arm"):
        paths.append(tmp_path / f"{arm}.csv")
        frame.to_csv(paths[-1], index=False)
    stats_job(tables=paths, summary=tmp_path / "summary.csv", tests=tmp_path / "tests.csv", baseline="none",
              controls=["shuffle"], statistics={"test": "paired", "correction": "bh"})
    seen = {}
    monkeypatch.setattr(data, "load_split", lambda path: (None, None, list(range(10))))
    monkeypatch.setitem(figures.FIGURES, "noise_robustness",
                        lambda summary, comparisons, **kw: seen.update(kw, comparisons=comparisons))
    figure_noise_robustness(summary=tmp_path / "summary.csv", tests=tmp_path / "tests.csv", test_split="x",
                            pdf=tmp_path / "f.pdf", png=tmp_path / "f.png", study="demo", baseline="none",
                            n_seeds=5, note="")
    assert set(seen["comparisons"]["baseline"]) == {"none"}
    n = len(seen["comparisons"])  # 3 arms x 4 levels against the baseline: one family
    assert n == 12
    assert seen["note"].endswith(
        "(one-tailed paired t-test over seeds vs baseline (better: higher accuracy), "
        f"p Benjamini–Hochberg-adjusted (FDR) within the {n} comparisons with the same baseline).")
