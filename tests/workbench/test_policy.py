"""The driver's decisions on scripted ledgers: no cluster, no store, no clock."""
from __future__ import annotations

import pytest

from workbench import _policy as policy
from workbench._policy import FailureAction, Ledger, ModelEntry
from workbench.states import ModelState

SOFT = "soft_predictions/digits"
MASK = "causal_mask/cartpole"


def _mutual(**settings) -> Ledger:
    """Two digits classifiers teaching each other, and a third model outside the flow."""
    entries = [ModelEntry("mlp", completed=2, total_epochs=6, produces=frozenset({SOFT}), consumes=frozenset({SOFT}),
                          exports=frozenset({1, 2})),
               ModelEntry("cnn", completed=1, total_epochs=6, produces=frozenset({SOFT}), consumes=frozenset({SOFT}),
                          exports=frozenset({0, 1})),
               ModelEntry("alpha", completed=0, total_epochs=6)]
    return Ledger.of(entries, **{"collaborate": True, **settings})


def _replace(ledger: Ledger, name: str, **changes) -> Ledger:
    import dataclasses

    entries = [dataclasses.replace(e, **changes) if e.name == name else e for e in ledger.models.values()]
    return Ledger.of(entries, **{f.name: getattr(ledger, f.name) for f in dataclasses.fields(ledger)
                                 if f.name != "models"})


def test_the_ledger_is_frozen():
    ledger = _mutual()
    with pytest.raises(AttributeError):
        ledger.round = 3
    with pytest.raises(TypeError):
        ledger.models["mlp"] = ledger.models["cnn"]


def test_a_model_waits_for_the_peers_it_learns_from():
    ledger = _mutual()
    assert policy.peers(ledger, "mlp") == ["cnn"] and policy.consumers(ledger, "cnn") == ["mlp"]
    assert not policy.ready(ledger, "mlp")  # epoch 3 needs the cnn's export after epoch 2
    assert policy.ready(ledger, "cnn") and policy.ready(ledger, "alpha")
    assert policy.ready_models(ledger) == ["cnn", "alpha"]
    # A failed, finished or stopped peer no longer holds it back; a paused one does.
    for state, ready in ((ModelState.FAILED, True), (ModelState.FINISHED, True), (ModelState.PAUSED, False)):
        assert policy.ready(_replace(ledger, "cnn", state=state), "mlp") is ready


def test_a_producer_does_not_run_ahead_of_a_one_way_consumer():
    entries = [ModelEntry("causal", completed=3, total_epochs=9, produces=frozenset({MASK})),
               ModelEntry("sim", completed=1, total_epochs=9, consumes=frozenset({MASK}))]
    ledger = Ledger.of(entries, collaborate=True)
    # Its next export would push out the one the consumer's next epoch needs (only two are kept).
    assert not policy.ready(ledger, "causal")
    assert not policy.ready(_replace(ledger, "sim", completed=2), "causal")
    assert policy.ready(_replace(ledger, "sim", in_flight=True, completed=2), "causal")  # it took it
    assert policy.ready(_replace(ledger, "sim", completed=3), "causal")
    assert policy.ready(_replace(ledger, "sim", state=ModelState.FINISHED), "causal")


def test_busy_paused_or_finished_models_are_not_ready():
    ledger = _mutual()
    assert not policy.ready(_replace(ledger, "alpha", in_flight=True), "alpha")
    assert not policy.ready(_replace(ledger, "alpha", state=ModelState.PAUSED), "alpha")
    assert not policy.ready(_replace(ledger, "alpha", completed=6), "alpha")


def test_with_a_controller_every_model_waits_for_its_round():
    ledger = _mutual(controllers=True, round=0)
    assert policy.ready_models(ledger) == ["alpha"]  # cnn finished epoch 1: round 1 is not decided
    assert policy.ready_models(_replace(ledger, "mlp", completed=1)) == ["alpha"]
    ledger = _mutual(controllers=True, round=1)
    assert policy.ready_models(ledger) == ["cnn", "alpha"]


def test_a_switched_off_flow_routes_nothing_and_waits_for_nobody():
    on, off = _mutual(), _mutual(flows={"mutual_learning": False})
    assert policy.route_knowledge(on, "cnn") == {SOFT: {"mlp": 1}}  # never an export newer than its own epoch
    assert policy.route_knowledge(off, "cnn") == {}
    assert policy.peers(off, "mlp") == [] and policy.ready(off, "mlp")
    assert not policy.should_export(off, "mlp") and policy.should_export(on, "mlp")
    assert policy.route_knowledge(_mutual(collaborate=False), "cnn") == {}


def test_routing_picks_each_kind_by_its_switch():
    entries = [ModelEntry("causal", completed=1, produces=frozenset({MASK}), exports=frozenset({1}), total_epochs=3),
               ModelEntry("sim", completed=1, produces=frozenset({"transitions/cartpole"}),
                          consumes=frozenset({MASK}), exports=frozenset({1}), total_epochs=3),
               ModelEntry("alpha", completed=1, consumes=frozenset({"transitions/cartpole"}), total_epochs=3)]
    both = Ledger.of(entries, collaborate=True)
    assert policy.route_knowledge(both, "sim") == {MASK: {"causal": 1}}
    assert policy.route_knowledge(both, "alpha") == {"transitions/cartpole": {"sim": 1}}
    no_experience = Ledger.of(entries, collaborate=True, flows={"experience": False})
    assert policy.route_knowledge(no_experience, "alpha") == {}
    assert policy.route_knowledge(no_experience, "sim") == {MASK: {"causal": 1}}
    assert not policy.should_export(no_experience, "sim") and policy.should_export(no_experience, "causal")
    assert policy.flow_of("imagined_transitions/x") == "experience" and policy.flow_of("custom/a") == "custom"


def test_segment_length():
    alone = Ledger.of([ModelEntry("m", completed=2, total_epochs=40, epoch_seconds=0.1)], checkpoint_interval=5)
    # every remaining epoch: the worker ends the segment after SEGMENT_SECONDS, measured or not
    assert policy.segment_epochs(alone, "m") == 38
    assert policy.segment_epochs(_replace(alone, "m", epoch_seconds=None), "m") == 38
    assert policy.segment_epochs(_replace(alone, "m", completed=39), "m") == 1  # never past the end
    assert policy.segment_epochs(Ledger.of(alone.models.values(), controllers=True), "m") == 1
    assert policy.segment_epochs(Ledger.of(alone.models.values(), profile_epoch=4), "m") == 1
    fast_peers = _mutual()
    assert policy.segment_epochs(fast_peers, "mlp") == 1  # knowledge flows between its epochs
    # outside the flow: its checkpoint every epoch (the default interval) is taken inside the segment
    assert policy.segment_epochs(fast_peers, "alpha") == 6


def test_the_checkpoint_time_floor_applies_only_to_models_alone():
    alone = Ledger.of([ModelEntry("m", total_epochs=40)], checkpoint_interval=5, checkpoint_seconds=10.0)
    assert policy.checkpoint_seconds(alone, "m") == 10.0
    # coupled models resume from an epoch all of them have a checkpoint for: no timing in it
    assert policy.checkpoint_seconds(Ledger.of(alone.models.values(), controllers=True,
                                               checkpoint_seconds=10.0), "m") == 0.0
    mutual = _mutual(checkpoint_seconds=10.0)
    assert policy.checkpoint_seconds(mutual, "mlp") == 0.0 and policy.checkpoint_seconds(mutual, "alpha") == 10.0


def test_checkpoint_due():
    ledger = Ledger.of([ModelEntry("m", completed=4, total_epochs=7)], checkpoint_interval=2)
    assert policy.checkpoint_due(ledger, "m")
    assert not policy.checkpoint_due(_replace(ledger, "m", completed=5), "m")
    assert policy.checkpoint_due(_replace(ledger, "m", completed=7), "m")  # always at the end
    assert not policy.checkpoint_due(_replace(ledger, "m", completed=0), "m")


def test_controller_round_due():
    ledger = Ledger.of([ModelEntry("a", completed=2), ModelEntry("b", completed=1),
                        ModelEntry("c", completed=0, state=ModelState.FAILED)], controllers=True, round=0)
    assert policy.controller_round_due(ledger) == 1
    assert policy.controller_round_due(_replace(ledger, "b", in_flight=True)) is None
    assert policy.controller_round_due(Ledger.of(ledger.models.values(), controllers=True, round=1)) is None
    assert policy.controller_round_due(Ledger.of(ledger.models.values(), controllers=False)) is None
    everyone_done = Ledger.of([ModelEntry("a", completed=2, state=ModelState.FINISHED)], controllers=True)
    assert policy.controller_round_due(everyone_done) is None


def test_rollback_until_too_many_failures_then_fail():
    assert [policy.after_failure(n, max_failures=2) for n in (1, 2, 3)] == [
        FailureAction.RETRY, FailureAction.RETRY, FailureAction.FAIL]
    assert policy.forgive(2) == 1 and policy.forgive(0) == 0


def test_coupled_models_resume_from_one_epoch():
    controller = {"ctl": [2, 4]}
    # Under a controller: the latest epoch all have; a model that finished early counts
    # with its final checkpoint.
    assert policy.resume_epochs({"a": ([2, 4, 6], 6), "b": ([2, 4], 6), "c": ([2, 3], 3)}, controller) == \
        {"a": 4, "b": 4, "c": 4}
    # One model without any checkpoint yet: everyone starts over (never mixed epochs).
    assert policy.resume_epochs({"a": ([2], 6), "b": ([], 6)}, controller) == {"a": 0, "b": 0}
    # The controller's state entering the round must exist too, else an earlier epoch.
    assert policy.resume_epochs({"a": ([2, 4], 6), "b": ([2, 4], 6)}, {"ctl": [2]}) == {"a": 2, "b": 2}
    # Without a controller only models that exchanged knowledge are coupled (transitively).
    models = {"a": ([3, 4, 5], 9), "b": ([1, 2, 3], 9), "c": ([2, 3, 4], 9), "d": ([6, 7, 8], 9)}
    assert policy.resume_epochs(models, {}, [("a", "b"), ("c", "b")]) == {"a": 3, "b": 3, "c": 3, "d": 8}
    assert policy.resume_epochs(models, {}) == {"a": 5, "b": 3, "c": 4, "d": 8}
    assert policy.resume_epochs({}, {}) == {}


def test_worker_assignment_and_reassignment_after_a_death():
    workers = {"tcp://w2": (None, frozenset()), "tcp://w1": (None, frozenset()), "tcp://gpu0": (0, frozenset()),
               "tcp://slot": (None, frozenset({"pinned_one"}))}
    chosen = policy.assign_workers({"a": None, "b": None, "c": None, "g": 0, "pinned_one": None}, workers)
    assert chosen["g"] == "tcp://gpu0" and chosen["pinned_one"] == "tcp://slot"
    cpu = [chosen[n] for n in ("a", "b", "c")]
    assert cpu == ["tcp://slot", "tcp://w1", "tcp://w2"]  # the least loaded CPU worker, by address on ties
    ledger = Ledger.of([ModelEntry("a", worker="tcp://w1"), ModelEntry("b", worker="tcp://w2"),
                        ModelEntry("c", worker="tcp://w2"), ModelEntry("d", worker="tcp://w3")])
    assert policy.choose_worker(ledger, "a", ["tcp://w2", "tcp://w3"]) == "tcp://w3"  # w1 died: least loaded
    assert policy.choose_worker(ledger, "a", ["tcp://w1", "tcp://w2"]) == "tcp://w1"  # its worker is back
    assert policy.choose_worker(ledger, "a", []) is None


def test_what_a_model_that_is_not_ready_waits_for():
    ledger = _mutual()
    assert policy.waiting_for(ledger, "mlp") == "peer cnn"
    assert policy.waiting_for(_replace(ledger, "cnn", state=ModelState.PAUSED), "mlp") == "peer cnn (paused)"
    assert policy.waiting_for(ledger, "cnn") is None and policy.waiting_for(ledger, "alpha") is None
    assert policy.waiting_for(_replace(ledger, "mlp", in_flight=True), "mlp") is None  # training, not waiting
    assert policy.waiting_for(_replace(ledger, "mlp", state=ModelState.PAUSED), "mlp") is None
    assert policy.waiting_for(_replace(ledger, "cnn", state=ModelState.FAILED), "mlp") is None
    assert policy.waiting_for(_mutual(controllers=True, round=0), "cnn") == "controller round 1"
    one_way = Ledger.of([ModelEntry("causal", completed=3, total_epochs=9, produces=frozenset({MASK})),
                         ModelEntry("sim", completed=1, total_epochs=9, consumes=frozenset({MASK}))], collaborate=True)
    assert policy.waiting_for(one_way, "causal") == "consumer sim"
    # Exactly the models ready() holds back have a reason.
    for ledger in (_mutual(), _mutual(controllers=True, round=0), one_way):
        for name in ledger.models:
            entry = ledger.models[name]
            idle = entry.state == ModelState.RUNNING and not entry.in_flight and entry.completed < entry.total_epochs
            assert (policy.waiting_for(ledger, name) is not None) == (idle and not policy.ready(ledger, name))
