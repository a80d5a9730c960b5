"""The preset part without a frontend: choose, edit, see the engine's problems by field."""
from __future__ import annotations

import json

from widgets import Presets, PresetsLogic
from widgets._presets import flatten, problems_by_field, unflatten


def test_flatten_round_trip():
    preset = {"epochs": 3, "collaboration": {"mutual_learning": True}, "models": {}}
    assert flatten(preset) == {"epochs": 3, "collaboration.mutual_learning": True, "models": {}}
    assert unflatten(flatten(preset)) == preset


def test_problems_land_on_their_field():
    fields = ["epochs", "datasets", "collaboration.mutual_learning"]
    by_field, general = problems_by_field(
        ["presets.quick.epochs: must be > 0, got -3", "presets.quick.datasets[1]: must be a string, got 3",
         "presets.quick: unknown key 'epoch', did you mean 'epochs'?"], "quick", fields)
    assert by_field == {"epochs": ["must be > 0, got -3"], "datasets": ["must be a string, got 3"]}
    assert general == ["presets.quick: unknown key 'epoch', did you mean 'epochs'?"]


def test_form_is_generated_from_the_preset_and_shows_problems_next_to_the_field():
    part = Presets(PresetsLogic("digits_mutual"))
    assert {"epochs", "batch_size", "datasets", "collaboration.mutual_learning", "seed"} <= set(part.fields)
    assert part.logic.valid
    part.fields["epochs"].value = -3
    assert not part.logic.valid
    assert "must be &gt; 0, got -3" in part.messages["epochs"].value
    assert part.messages["batch_size"].value == ""
    part.fields["epochs"].value = 2
    assert part.logic.valid and part.messages["epochs"].value == ""
    assert part.logic.overrides() == {"epochs": 2}
    assert part.logic.selection() == ("digits_mutual", {"epochs": 2})


def test_unknown_names_are_caught_at_plan_level():
    part = Presets(PresetsLogic("digits_mutual"))
    part.fields["datasets"].value = "digits, digitz"
    assert not part.logic.valid
    assert part.logic.problems["datasets"] == ["unknown dataset 'digitz', did you mean 'digits'?"]
    assert "unknown dataset &#x27;digitz&#x27;" in part.messages["datasets"].value


def test_choosing_another_preset_rebuilds_the_form():
    part = Presets(PresetsLogic("digits_mutual"))
    part.chooser.value = "digits_pbt"
    assert part.logic.name == "digits_pbt"
    assert "models.digits_mlp.population" in part.fields
    assert part.fields["models.digits_mlp.population"].value == 4


def test_user_presets_load_edit_and_run_as_their_own_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"tiny": {"description": "x", "datasets": ["digits"], "epochs": 1, "batch_size": 8,
                                         "target_models": ["digits_mlp"], "checkpoint_interval": 1,
                                         "enable_collaborative_training": False}}))
    part = Presets(PresetsLogic("digits_mutual"))
    part.file.value = str(path)
    part.load_button.click()
    assert "tiny" in part.chooser.options
    part.chooser.value = "tiny"
    part.fields["epochs"].value = 2
    ref, overrides = part.logic.selection()
    assert overrides == {} and ref.endswith("tiny.json")
    from workbench.presets import resolve_preset

    assert resolve_preset(ref)[1]["epochs"] == 2


def test_a_broken_user_file_says_why(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    part = Presets(PresetsLogic("digits_mutual"))
    part.file.value = str(path)
    part.load_button.click()
    assert "not valid JSON" in part.status.value


def test_a_mistyped_preset_name_is_refused_with_the_close_match_never_replaced():
    import pytest

    from widgets import ControlPanel
    from workbench.errors import PresetError

    with pytest.raises(PresetError, match=r"unknown preset 'digits_mutal'; did you mean 'digits_mutual'.*"
                                          r"known presets: .*collaborative_training"):
        PresetsLogic("digits_mutal")
    with pytest.raises(PresetError, match="unknown preset 'digits_mutal'; did you mean 'digits_mutual'"):
        ControlPanel(preset="digits_mutal")
    with pytest.raises(PresetError, match=r"unknown preset 'zzz'; known presets: .*quick"):
        PresetsLogic("zzz")
