"""The Setup tab as a form, without a frontend: sections, hyperparameter controls from each
model's schema with the engine's message beside them, the description whole, the JSON view."""
from __future__ import annotations

import json

import pytest

from widgets import Presets, PresetsLogic


def _labels(box) -> list[str]:
    return [row.children[0].value for row in box.children[1:] if hasattr(row, "children") and row.children
            and hasattr(row.children[0], "value") and isinstance(row.children[0].value, str)]


def test_the_form_has_sections_and_every_field_in_one_of_them():
    part = Presets(PresetsLogic("digits_mutual"))
    assert [box.children[0].value for box in part.sections.values()] == [
        "<b>Run</b>", "<b>Data</b>", "<b>Models</b>", "<b>Collaboration</b>", "<b>Resources</b>"]
    assert {"epochs", "batch_size", "seed"} <= set(_labels(part.sections["run"]))
    assert "datasets" in _labels(part.sections["data"])
    assert {"enable_collaborative_training", "collaboration.mutual_learning"} <= set(
        _labels(part.sections["collaboration"]))
    assert "workers" in _labels(part.sections["resources"])
    assert "models" not in part.fields, "no JSON box for the models: they have controls"


def test_each_models_hyperparameters_are_the_live_tuning_controls_and_reach_the_preset():
    part = Presets(PresetsLogic("digits_mutual"))
    assert set(part.logic.hparams) == {"digits_mlp", "digits_cnn"}
    lr = part.hparam_controls[("digits_mlp", "lr")]
    assert type(lr).__name__ == "FloatLogSlider" and lr.value == pytest.approx(0.003)
    assert type(part.hparam_controls[("digits_cnn", "precision")]).__name__ == "Dropdown"
    lr.value = 0.01  # as if dragged
    assert part.logic.valid
    assert part.logic.overrides() == {"models.digits_mlp.hyperparameters.lr": pytest.approx(0.01)}
    assert part.logic.selection() == ("digits_mutual", {"models.digits_mlp.hyperparameters.lr": pytest.approx(0.01)})
    assert part.logic.preset["models"] == {"digits_mlp": {"hyperparameters": {"lr": pytest.approx(0.01)}}}
    assert part.hparam_controls[("digits_cnn", "lr")].value == pytest.approx(0.003)  # the other model keeps its own
    assert '"lr": 0.01' in part.json.value


def test_the_engines_message_shows_beside_the_hyperparameter():
    part = Presets(PresetsLogic("digits_mutual"))
    part.logic.set_hparam("digits_cnn", "lr", 5.0)
    assert not part.logic.valid
    assert "must be &lt;= 1.0, got 5.0" in part.hparam_messages[("digits_cnn", "lr")].value
    assert part.hparam_messages[("digits_mlp", "lr")].value == ""
    part.logic.set_hparam("digits_cnn", "lr", 0.5)
    assert part.logic.valid and part.hparam_messages[("digits_cnn", "lr")].value == ""


def test_the_description_is_shown_whole_and_the_preset_as_json_one_click_away():
    part = Presets(PresetsLogic("quick"))
    text = part.logic.values["description"]
    assert part.description.value == text and part.description.rows * 85 >= len(text)
    assert part.json_view.selected_index is None  # closed, one click opens it
    assert json.loads(_unescape(part.json.value)) == part.logic.preset
    # A preset whose models already carry hyperparameters: their controls show those values.
    assert part.hparam_controls[("environment_simulator", "plan_population")].value == 100


def _unescape(html_text: str) -> str:
    import html
    import re

    return html.unescape(re.sub(r"</?pre[^>]*>", "", html_text))


def test_a_panel_override_of_a_hyperparameter_moves_its_control():
    from widgets import ControlPanel

    panel = ControlPanel(preset="digits_mutual", overrides={"models.digits_cnn.hyperparameters.lr": 0.02,
                                                            "description": "mine"})
    assert panel.presets.hparam_controls[("digits_cnn", "lr")].value == pytest.approx(0.02)
    assert panel.presets.description.value == "mine"
    assert panel.presets.logic.overrides() == {"models.digits_cnn.hyperparameters.lr": 0.02, "description": "mine"}
