import json

import pytest

from workbench.errors import PresetError
from workbench.presets import builtin_presets, load_presets, parse_override, resolve_preset


def test_original_preset_is_verbatim():
    assert builtin_presets()["collaborative_training"] == {
        "description": "Full model collaborative training using all available data",
        "datasets": ["all_available_datasets"],
        "epochs": 50,
        "batch_size": 16,
        "target_models": ["all_models"],
        "checkpoint_interval": 5,
        "enable_collaborative_training": True,
    }


def test_defaults_fill_optional_keys():
    name, preset = resolve_preset("collaborative_training")
    assert name == "collaborative_training"
    assert preset["seed"] == 0 and preset["collaboration"]["mutual_learning"] is False  # measured: no gain
    assert resolve_preset("digits_mutual")[1]["collaboration"]["mutual_learning"] is True  # its demonstration


def test_flows_that_did_not_pay_are_off_and_a_controller_steers_only_when_named():
    from workbench.plan import make_plan

    def flows(preset, **overrides):
        return make_plan(*resolve_preset(preset, overrides))

    quick = flows("quick")  # all_models brings the controller in; it does not steer (docs/collaboration.md)
    assert quick.controllers and quick.preset["collaboration"] == {
        "mutual_learning": False, "causal_mask": True, "experience": False, "controller": False}
    assert any("adaptive_learning_controller came in with all_models and steers nothing" in n for n in quick.notes)
    assert flows("digits_pbt").preset["collaboration"]["controller"] is True  # named in target_models
    assert flows("quick", **{"collaboration.controller": True}).preset["collaboration"]["controller"] is True
    assert flows("digits_pbt", **{"collaboration.controller": False}).preset["collaboration"]["controller"] is False
    assert resolve_preset("quick")[1]["collaboration"]["controller"] is None  # decided by the plan, not the preset


def test_every_problem_is_reported_by_path_with_suggestion():
    with pytest.raises(PresetError) as info:
        resolve_preset("quick", {"epoch": 3, "batch_size": -1, "checkpoint_interval": "x",
                                 "enable_collaborative_training": 1})
    problems = info.value.problems
    assert "presets.quick: unknown key 'epoch', did you mean 'epochs'?" in problems
    assert "presets.quick.batch_size: must be > 0, got -1" in problems
    assert "presets.quick.checkpoint_interval: must be an integer, got 'x'" in problems
    assert any(p.startswith("presets.quick.enable_collaborative_training: must be true or false") for p in problems)


def test_the_checkpoint_time_floor_defaults_to_ten_seconds_and_refuses_nonsense():
    assert resolve_preset("quick")[1]["checkpoint_seconds"] == 10
    assert resolve_preset("quick", {"checkpoint_seconds": 0})[1]["checkpoint_seconds"] == 0  # every interval
    for bad, why in ((-1, "must be seconds in 0.."), ("x", "must be an integer or a number"),
                     (float("nan"), "must be seconds in 0.."),
                     (None, "must be an integer or a number")):
        with pytest.raises(PresetError) as info:
            resolve_preset("quick", {"checkpoint_seconds": bad})
        assert any(p.startswith("presets.quick.checkpoint_seconds: ") and why in p for p in info.value.problems)


def test_unknown_preset_suggests_the_close_name():
    with pytest.raises(PresetError, match="unknown preset 'quik'; did you mean 'quick'"):
        resolve_preset("quik")


def test_negative_epochs_rejected():
    with pytest.raises(PresetError, match=r"presets.quick.epochs: must be > 0, got -3"):
        resolve_preset("quick", {"epochs": -3})


def test_dotted_overrides_create_nested_keys():
    _, preset = resolve_preset("digits_mutual", dict([parse_override("models.digits_mlp.hyperparameters.lr=0.01"),
                                                      parse_override("epochs=2")]))
    assert preset["epochs"] == 2
    assert preset["models"]["digits_mlp"]["hyperparameters"]["lr"] == 0.01


def test_nested_model_keys_are_validated():
    with pytest.raises(PresetError, match=r"presets.quick.models.digits_mlp: unknown key 'populaton', did you mean 'population'\?"):
        resolve_preset("quick", {"models.digits_mlp.populaton": 2})


def test_user_preset_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"description": "x", "datasets": ["digits"], "epochs": 1, "batch_size": 8,
                                "target_models": ["digits_mlp"], "checkpoint_interval": 1,
                                "enable_collaborative_training": False}))
    assert "mine" in load_presets(path)
    name, preset = resolve_preset(str(path))
    assert name == "mine" and preset["epochs"] == 1


def test_broken_user_file_is_one_clear_message(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{ not json")
    with pytest.raises(PresetError, match="not valid JSON"):
        load_presets(path)
