"""The study's grid with confirmation (issue 29): the best ``grid.confirm`` distinct models by
the first seed are trained with every seed, and the winner is the best mean among them."""

import dataclasses

import pandas as pd

from scaling.study import config as study_config
from scaling.study.grid import confirm_plan, grid_table, grid_table_rows, grid_verdict
from scaling.study.stats import Pooled
from scaling.study.store import RunStore, run_row
from scaling.zoo import get_spec


def _grid(preset):
    """Four grid entries over three distinct specs (the last two share one realised model)."""
    specs = [get_spec("mobilenet_v2", small_input=True, resolution=28, in_chans=1,
                      num_classes=10, width=w).replace(name=f"g{i}")
             for i, w in enumerate((0.25, 0.35, 0.5))]
    coeffs = [(2, 1, 1), (1, 1.4, 1), (1, 1, 1.4), (1.4, 1.2, 1)]
    return [{"experiment": "grid", "alpha": a, "beta": b, "gamma": g, "macs": 1, "w": 1.0,
             "resolution": 28, "mac_ratio": 2.0, "refit": True,
             "spec": specs[min(i, 2)]} for i, (a, b, g) in enumerate(coeffs)]


def _preset(**changes):
    """The medium preset with three seeds and ``changes``."""
    medium = study_config.PRESETS["medium"]
    return dataclasses.replace(medium, protocol=dataclasses.replace(medium.protocol,
                                                                    seeds=(0, 1, 2)), **changes)


def _store(tmp_path, grid, acc, preset):
    """A runs.csv with ``acc[(entry index, seed)]`` as each run's validation top-1."""
    store = RunStore(tmp_path / "runs.csv")
    key = preset.protocol.key()
    store.update([run_row(grid[i]["spec"], seed, key, {
        "val_acc": val, "test_acc": val, "status": "ok", "train_seconds": 1.0,
        "wall_seconds": 1.0, "device": "cpu"}) for (i, seed), val in acc.items()])
    return store


def test_confirmed_models_are_the_best_by_the_first_seed_and_the_winner_is_the_best_mean(
        tmp_path):
    preset = _preset(grid_confirm=2, grid_prefer=None)
    grid = _grid(preset)
    # seed 0 ranks entry 0 first, entry 1 second; seeds 1 and 2 turn it round
    acc = {(0, 0): 0.88, (1, 0): 0.87, (2, 0): 0.86, (0, 1): 0.84, (0, 2): 0.84,
           (1, 1): 0.87, (1, 2): 0.87}
    store = _store(tmp_path, grid, acc, preset)
    confirmed = confirm_plan(grid, preset, store)
    assert [e["spec"].name for e in confirmed] == ["g0", "g1"]
    assert [e["confirmed"] for e in grid] == [True, True, False, False]
    rows = grid_table_rows(grid, preset, store)
    assert (rows[0]["alpha"], rows[0]["beta"]) == (1, 1.4)  # the best mean, not the best seed 0
    assert rows[0]["val_mean"] == 0.87 and len(rows) == 3 + 3 + 1 + 1
    assert all(r["confirmed"] for r in rows[:6]) and not rows[-1]["confirmed"]
    frame = pd.DataFrame(rows)
    table = grid_table(frame)
    assert "| (1, 1.4, 1) | 1 | 28 | 2.000 | yes | 3 | 87.00 |" in table
    assert "| (1, 1, 1.4) = (1.4, 1.2, 1) |" in table[-1] and "| 1 | 86.00 |" in table[-1]
    noise = Pooled(var=0.005 ** 2, df=62, cells=31)
    said = grid_verdict(frame, noise)
    assert "the best 2 by the first seed were trained with 3 seeds" in said
    assert "on the mean of 3 seeds each" in said and "1.67 points" in said
    assert "is told from the runner-up" in said  # 1.67 points, past 2.00 x 0.41


def test_confirm_1_is_the_single_seed_grid(tmp_path):
    preset = _preset(grid_confirm=1, grid_prefer=None)
    grid = _grid(preset)
    store = _store(tmp_path, grid, {(0, 0): 0.85, (1, 0): 0.87, (2, 0): 0.86}, preset)
    assert confirm_plan(grid, preset, store) == []
    rows = grid_table_rows(grid, preset, store)
    assert len(rows) == 4 and (rows[0]["alpha"], rows[0]["beta"]) == (1, 1.4)
    assert "one seed each" in grid_verdict(pd.DataFrame(rows), None)


def test_preferred_width_rule_is_confirmed_and_kept_unless_beaten_by_the_margin(tmp_path):
    """``grid.prefer: width``: the width-only candidate (1, 1.4, 1) is confirmed beside the best
    by the first seed, and the best mean replaces it only when it leads by more than
    ``grid.margin`` standard errors of the difference of means."""
    from scaling.study.grid import grid_winner

    preset = _preset(grid_confirm=1, grid_prefer="width", grid_margin=1.0)
    grid = _grid(preset)
    seed0 = {(0, 0): 0.88, (1, 0): 0.85, (2, 0): 0.86}
    confirmed = confirm_plan(grid, preset, _store(tmp_path / "a", grid, seed0, preset))
    assert [e["spec"].name for e in confirmed] == ["g0", "g1"]  # the best and the width rule
    seeds = preset.protocol.seeds[1:]
    # within noise: depth-only leads width by 0.17 points, seed std 1.3 points -> kept
    close = {**seed0, **{(0, s): v for s, v in zip(seeds, (0.86, 0.87))},
             **{(1, s): v for s, v in zip(seeds, (0.875, 0.88))}}
    store = _store(tmp_path / "b", grid, close, preset)
    confirm_plan(grid, preset, store)
    rows = grid_table_rows(grid, preset, store)
    assert (rows[0]["alpha"], rows[0]["beta"]) == (2, 1)  # the best mean ranks first
    winner, why = grid_winner(rows, grid, preset)
    assert winner == (1, 1.4, 1) and "the preferred rule is kept" in why
    said = grid_verdict(pd.DataFrame(rows), Pooled(var=0.01 ** 2, df=31, cells=32), "width", 1)
    assert "the best 1 by the first seed and the preferred width-only rule were trained" in said
    assert "the best mean (2, 1, 1) leads the runner-up (1, 1.4, 1)" in said
    # past the margin: a lead of 0.5 points, seed std 0.1 point -> replaced
    far = {**seed0, **{(0, s): v for s, v in zip(seeds, (0.881, 0.879))},
           **{(1, s): v for s, v in zip(seeds, (0.876, 0.874))}}
    store = _store(tmp_path / "c", grid, {**far, (1, 0): 0.875}, preset)
    confirm_plan(grid, preset, store)
    winner, why = grid_winner(grid_table_rows(grid, preset, store), grid, preset)
    assert winner == (2, 1, 1) and "it replaces the preferred rule" in why
    # no preference: the best mean, as before
    plain = dataclasses.replace(preset, grid_prefer=None, grid_confirm=2)
    confirm_plan(grid, plain, store)
    assert grid_winner(grid_table_rows(grid, plain, store), grid, plain)[0] == (2, 1, 1)


def test_preferred_rule_first_by_the_first_seed_needs_no_confirmation(tmp_path):
    from scaling.study.grid import grid_winner

    preset = _preset(grid_confirm=1, grid_prefer="width")
    grid = _grid(preset)
    store = _store(tmp_path, grid, {(0, 0): 0.85, (1, 0): 0.87, (2, 0): 0.86}, preset)
    assert confirm_plan(grid, preset, store) == []
    rows = grid_table_rows(grid, preset, store)
    assert grid_winner(rows, grid, preset)[0] == (1, 1.4, 1)
