import pytest

from workbench import registry
from workbench.errors import RegistryError
from workbench.registry import class_path, describe, describe_all, get_model, is_controller, list_models

DECLARATIONS = ("name", "accepts", "hyperparameters", "metrics", "description", "host_tensors", "cpu_threads")


@pytest.fixture
def unimported(monkeypatch):
    """The registry as a fresh driver sees it: no built-in trainer's module registered yet.
    Returns the real registry."""
    real = list_models()
    monkeypatch.setattr(registry, "_REGISTRY", {n: c for n, c in real.items() if n not in registry._CARDS})
    return real


def test_every_built_in_trainer_has_a_card_and_the_controller_needs_none():
    trainers = {n for n in registry._BUILTIN if not is_controller(get_model(n))}
    assert set(registry._CARDS) == trainers


@pytest.mark.parametrize("name", sorted(registry._CARDS))
def test_a_built_in_trainer_inherits_its_card_so_they_cannot_drift(name, unimported):
    card = describe(name)
    assert card.__module__ == "workbench.models.cards" and card.name == name
    cls = unimported[name]
    assert cls is not card and issubclass(cls, card)
    for attr in DECLARATIONS:
        assert getattr(cls, attr) == getattr(card, attr), attr
    assert is_controller(cls) is is_controller(card) is False
    assert cls.check_hparams.__func__ is card.check_hparams.__func__
    assert class_path(name) == f"{cls.__module__}.{cls.__qualname__}"  # what `workbench models` prints


def test_describe_gives_the_registered_class_once_its_module_is_imported():
    assert describe("digits_mlp") is get_model("digits_mlp")
    assert describe("adaptive_learning_controller") is get_model("adaptive_learning_controller")


def test_describe_all_lists_what_list_models_lists(unimported):
    described = describe_all()
    assert list(described) == list(unimported)
    assert described["digits_cnn"].__module__ == "workbench.models.cards"
    assert described["adaptive_learning_controller"] is get_model("adaptive_learning_controller")


def test_an_unknown_name_is_the_same_error_as_get_models(unimported, monkeypatch):
    with pytest.raises(RegistryError, match=r"unknown model 'digits_mpl'; did you mean 'digits_mlp'\?"):
        describe("digits_mpl")
    monkeypatch.undo()
    with pytest.raises(RegistryError, match=r"unknown model 'digits_mpl'; did you mean 'digits_mlp'\?"):
        get_model("digits_mpl")


def test_the_causal_card_resolves_and_checks_the_true_graph(unimported, tmp_path, monkeypatch):
    card = describe("causal_reasoning_engine")
    (tmp_path / "truth.csv").write_text("cause,effect\nx1,x2\n")
    monkeypatch.chdir(tmp_path)
    path = "models.causal_reasoning_engine.hyperparameters"
    assert card.check_hparams({"true_graph": "truth.csv"}, path) == ({"true_graph": str(tmp_path / "truth.csv")}, [])
    assert card.check_hparams({"true_graph": ""}, path) == ({"true_graph": ""}, [])
    hparams, problems = card.check_hparams({"true_graph": "absent.csv"}, path)
    assert problems == [f"{path}.true_graph: file not found: {tmp_path / 'absent.csv'}"]
